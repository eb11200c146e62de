"""`python -m streams ...` is the `streamrec` command."""

from streams.tools.cli import main

raise SystemExit(main())
