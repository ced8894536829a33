"""The ``commit`` parameter as it arrives from ``prefect deployment run -p commit=...``.

Prefect's CLI parses every ``-p key=value`` as JSON and falls back to the raw text only when
the value is not valid JSON. A commit id is a string to git, but what a user types may be valid
JSON of another type:

- ``-p commit=1234567``      -> the int ``1234567``: its decimal digits are exactly what was
  typed (JSON integers have no leading zeros, no sign prefix and no exponent), so it is turned
  back into the string ``"1234567"``.
- ``-p commit=1e10``         -> the float ``10000000000.0``: what was typed (``1e10``,
  ``1E10``, ``10000000000.0``, ``1e+10``...) cannot be recovered, and an abbreviated SHA such
  as ``1234e56`` would even lose digits. Refused, with the quoted form to use instead.
- ``-p commit=true`` / ``null`` -> a bool / None: refused the same way.
- ``-p commit=0123abc``      -> not JSON, arrives as the string itself.

Pure logic, unit-tested in tests/unit/pipeline/test_commit_param.py.
"""

from __future__ import annotations

from typing import Any

from prefect_delivery.blocks.errors import ConfigError

#: What the delivery flow's ``commit`` parameter accepts before normalisation: the JSON types
#: ``-p commit=...`` can produce. bool and None are listed so pydantic does not coerce them
#: (True would become 1) and the flow can refuse them with a clear message.
CommitInput = str | int | float | bool | None


def _float_as_typed(value: float) -> str:
    """A plausible spelling of what was typed, for the error message only."""
    text = f"{value:g}".replace("e+", "e")
    return text if text != "inf" else "..."


def commit_id(value: Any) -> str:
    """The commit id exactly as the user typed it, or a ConfigError saying how to pass it."""
    if isinstance(value, str):
        return value.strip() or "HEAD"
    if isinstance(value, bool) or value is None:
        typed = {True: "true", False: "false", None: "null"}[value]
        raise ConfigError(
            "commit",
            f"arrived as the JSON literal {typed} (`-p` values are parsed as JSON), not as a "
            "commit id.",
            f"quote it: -p 'commit=\"{typed}\"', or pass a SHA or a ref.",
        )
    if isinstance(value, int):
        if value < 0:
            raise ConfigError("commit", f"{value} is not a commit id.", "pass a SHA or a ref.")
        return str(value)
    if isinstance(value, float):
        typed = _float_as_typed(value)
        raise ConfigError(
            "commit",
            f"arrived as the number {value!r}: `-p` values are parsed as JSON, so a commit id "
            f"like {typed} became a float and the characters you typed cannot be recovered "
            "exactly (an abbreviated SHA with an 'e' loses digits).",
            f"quote it as a JSON string: -p 'commit=\"{typed}\"' (or pass the full 40-hex SHA).",
        )
    raise ConfigError(
        "commit",
        f"must be a string (a SHA or a ref), got {type(value).__name__} {value!r}.",
        "pass -p 'commit=\"<sha>\"'.",
    )
