"""What every ``delivery`` command shares: exit codes, the state folder, error output."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


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


@contextmanager
def flags_as_settings(flags: str):
    """Settings built from a command's flags: a value they refuse is the user's bad input,
    said with the field, the value and ``flags`` (which options set them)."""
    from pydantic import ValidationError

    from prefect_delivery.blocks.errors import ConfigError

    try:
        yield
    except ValidationError as exc:
        from prefect_delivery.tasks.manifest import describe_validation_error

        raise ConfigError(
            flags, f"{exc.title}: " + describe_validation_error("", exc), "change the option."
        ) from None


def report_internal_error(exc: BaseException) -> str:
    """A fault of prefect-delivery's own code, said as one (never as the user's input): the
    traceback goes to a file under the state folder's logs/, the message says where."""
    import tempfile
    import time
    import traceback

    from prefect_delivery.blocks.errors import InternalError
    from prefect_delivery.blocks.secrets import mask

    text = mask("".join(traceback.format_exception(exc)))
    for folder in (state_dir(None) / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"internal-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            path.write_text(text)
            break
        except OSError:
            path = None
    where = f"the traceback in {path}" if path else "the traceback above"
    if path is None:
        print(text, file=sys.stderr)
    return str(exc) if isinstance(exc, InternalError) else str(InternalError.of(exc, where))
