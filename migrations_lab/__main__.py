"""``python -m migrations_lab check PATH``."""

from prefect_delivery.migrations_lab.cli import main

raise SystemExit(main())
