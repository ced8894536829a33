"""Keeping secret values out of logs: reveal a SecretStr only through here.

Prefect redacts its own API key and nothing else: a registry password or a database URL that
reaches a log line goes to the console and the Prefect API in clear. Every place that needs a
secret's value calls :func:`reveal`, which remembers the value and installs a logging filter
that masks every remembered value in every record the process logs (console and the Prefect
API handler alike), and :func:`mask` cleans any text (exception messages, artifacts) before it
is recorded.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydantic import SecretStr

MASK = "**********"
MIN_LENGTH = 4  # shorter values would mask ordinary words

_values: set[str] = set()
_lock = threading.Lock()
_installed: set[int] = set()


def register(value: str | None) -> None:
    """Remember a secret value so it is masked wherever it would be logged."""
    if not value or len(value) < MIN_LENGTH:
        return
    with _lock:
        _values.add(value)
    install()


def reveal(secret: SecretStr | str | None) -> str:
    """The clear value of a secret, for the one call that needs it (and masked in logs)."""
    if secret is None:
        return ""
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else str(secret)
    register(value)
    return value


def mask(text: Any) -> str:
    """``text`` with every known secret value replaced by the mask."""
    result = str(text)
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in result:
            result = result.replace(value, MASK)
    return result


def mask_data(value: Any) -> Any:
    """``value`` with every string inside it (dicts, lists) masked: for ledger lines, event
    payloads and artifact tables."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: mask_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_data(v) for v in value]
    return value


class MaskSecrets(logging.Filter):
    """A filter for handlers: rewrites records that carry a known secret value."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _values:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot format is left alone
            return True
        cleaned = mask(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = mask(logging.Formatter().formatException(record.exc_info))
            if MASK in text:
                record.exc_info = None
                record.exc_text = text
        return True


_FILTER = MaskSecrets()


def install() -> None:
    """Attach the filter to every handler of the root and Prefect loggers (idempotent)."""
    for name in (
        None,
        "prefect",
        "prefect.flow_runs",
        "prefect.task_runs",
        "prefect.extra",
        "prefect.workers",
    ):
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if id(handler) not in _installed:
                handler.addFilter(_FILTER)
                _installed.add(id(handler))


def load_secret(block_name: str, where: str) -> str:
    """The value of a Prefect ``Secret`` block (masked in logs from now on)."""
    from prefect.blocks.system import Secret

    from prefect_delivery.blocks.errors import ConfigError

    try:
        secret = Secret.load(block_name)
    except ValueError:
        raise ConfigError(
            where,
            f"there is no Secret block named {block_name!r}.",
            f"create it (`prefect block create secret` or Secret(value=...).save({block_name!r}))"
            " or correct the name",
        ) from None
    return reveal(secret.get())
