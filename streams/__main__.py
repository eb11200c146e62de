"""`python -m streams ...` is the `streamrec` command."""

from streams.cli import main

raise SystemExit(main())
