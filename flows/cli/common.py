"""What every ``delivery`` command shares: exit codes, the state folder, error output."""

from __future__ import annotations

import os
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def state_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("DELIVERY_STATE_DIR") or ".delivery").resolve()


def print_err(message: str) -> None:
    print(f"delivery: {message}", file=sys.stderr)
