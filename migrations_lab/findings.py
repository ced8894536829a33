"""The one shape every check reports in: a ``Finding``.

A finding names the revision (and its file), the rule (a stable kebab-case id), what was
found, the statement involved, why it matters and the safe form. ``severity="error"`` fails
the lab; warnings are shown but do not.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Check = Literal["plan", "lint", "roundtrip", "compat", "apply"]
Severity = Literal["error", "warning"]


class Finding(BaseModel):
    check: Check
    rule: str
    message: str
    severity: Severity = "error"
    revision: str | None = None
    path: str | None = None
    statement: str | None = None
    why: str | None = None
    fix: str | None = None
    table: str | None = None
    target: str | None = None
    #: set when an explicit waiver in the revision silenced this finding
    waived: str | None = None

    @property
    def failing(self) -> bool:
        return self.severity == "error" and self.waived is None


def short(sql: str, limit: int = 160) -> str:
    """One line of SQL for a message."""
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
