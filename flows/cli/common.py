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


def state_dirs(value: str | None) -> list[str]:
    """Where to look for environment snapshots, first match wins: --state-dir, then
    $DELIVERY_STATE_DIR, ./.delivery, and the user's state folder (the blocks' default)."""
    from prefect_delivery.blocks.paths import default_state_dir

    found: list[str] = []
    for candidate in (value, os.environ.get("DELIVERY_STATE_DIR"), ".delivery", None):
        folder = str(Path(candidate).resolve()) if candidate else default_state_dir()
        if folder not in found:
            found.append(folder)
    return found
