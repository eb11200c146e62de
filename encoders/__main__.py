"""``python -m encoders train|evaluate|export ...``."""

import sys

from encoders.cli import main

sys.exit(main())
