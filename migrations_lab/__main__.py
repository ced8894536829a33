"""``python -m migrations_lab check PATH``."""

from migrations_lab.cli import main

raise SystemExit(main())
