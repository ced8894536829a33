"""``python -m prefect_delivery.flows.cli``: the ``delivery`` command (for processes the CLI
starts itself, which cannot count on the console script being on PATH)."""

import sys

from prefect_delivery.flows.cli import main

sys.exit(main())
