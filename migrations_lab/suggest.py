"""Suggest a phase for a revision that declares none, from the SQL it renders.

- ``contract``: it drops a table or a column (or an index) it did not create itself, or
  enforces NOT NULL on an existing column;
- ``migrate``: it changes data of existing tables (UPDATE, DELETE, INSERT ... SELECT);
- ``expand``: everything else that is additive: new tables, nullable columns or columns with
  a default, new indexes and constraints, or no schema change at all.

The strongest phase wins (contract > migrate > expand) and the reason names the statement
that decided it. A rename fits no phase (it breaks the running release either way); the
suggestion says so. The suggestion is advice for annotating a history quickly: the lint of the
annotated revision still judges whether the statements are safe for that phase.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from prefect_delivery.migrations_lab.findings import short
from prefect_delivery.migrations_lab.sqltext import mask_literals, split_statements, unquote

_NAME = r'(?:"(?:[^"]|"")+"|[^\s(),"]+)'
_QNAME = rf"{_NAME}(?:\.{_NAME})?"
_RANK = {"expand": 0, "migrate": 1, "contract": 2}


class Suggestion(BaseModel):
    phase: str | None
    reason: str
    line: str | None = None  # the one line to add to the revision file
    source: str = "its SQL"

    def text(self, path: str) -> str:
        if self.line is None:
            return f"no phase fits ({self.reason}); split the revision into expand / migrate " \
                   "/ contract"
        return f"add the line `{self.line}` to {path} (suggested from {self.source}: {self.reason})"


def _classify(stmt: str, m: str, created: set[str]) -> tuple[str | None, str] | None:
    t = re.match(rf"^CREATE TABLE (?:IF NOT EXISTS )?({_QNAME})", m)
    if t:
        created.add(unquote(t.group(1)))
        return "expand", f"it creates table {unquote(t.group(1))}"
    if re.match(r"^CREATE (UNIQUE )?INDEX\b", m):
        return "expand", "it creates an index"
    if re.match(r"^CREATE (TYPE|SEQUENCE|VIEW|EXTENSION|SCHEMA)\b", m):
        return "expand", f"{short(stmt, 60)}"
    d = re.match(r"^DROP TABLE (?:IF EXISTS )?(" + _QNAME + ")", m)
    if d and unquote(d.group(1)) not in created:
        return "contract", f"it drops table {unquote(d.group(1))}"
    if re.match(r"^DROP INDEX\b", m):
        return "contract", "it drops an index"
    a = re.match(rf"^ALTER TABLE (?:IF EXISTS )?(?:ONLY )?({_QNAME}) (.*)$", m)
    if a:
        table, rest = unquote(a.group(1)), a.group(2)
        if table in created:
            return "expand", f"it alters table {table}, created in the same revision"
        if rest.startswith("RENAME"):
            return None, f"it renames: {short(stmt, 80)}"
        col = re.match(rf"^DROP (?:COLUMN )?(?:IF EXISTS )?(?!CONSTRAINT\b|DEFAULT\b|NOT NULL\b)"
                       rf"({_NAME})", rest)
        if col:
            return "contract", f"it drops column {table}.{unquote(col.group(1))}"
        if re.search(r"\bSET NOT NULL\b", rest):
            return "contract", f"it enforces NOT NULL on {table}"
        add = re.match(rf"^ADD (?:COLUMN )?(?:IF NOT EXISTS )?(?!CONSTRAINT\b)({_NAME}) (.*)$",
                       rest)
        if add:
            col_name, spec = unquote(add.group(1)), add.group(2)
            if re.search(r"\bNOT NULL\b", spec) and not re.search(r"\bDEFAULT\b", spec):
                return "contract", f"it adds NOT NULL column {table}.{col_name} without a " \
                                   "default (the running release does not write it)"
            return "expand", f"it adds column {table}.{col_name}"
        if rest.startswith("DROP CONSTRAINT"):
            return "contract", f"it drops a constraint of {table}"
        return "expand", f"it alters table {table}"
    dml = re.match(rf"^(?:WITH .*? )?(UPDATE|DELETE FROM|INSERT INTO) (?:ONLY )?({_QNAME})", m)
    if dml and unquote(dml.group(2)) not in created:
        verb = dml.group(1).split()[0].lower()
        return "migrate", f"it {'inserts into' if verb == 'insert' else verb + 's'} " \
                          f"{unquote(dml.group(2))}"
    if m.startswith(("CREATE", "COMMENT")):
        return "expand", ""
    return None


def suggest_phase(sql: str) -> Suggestion:
    """The phase the rendered upgrade SQL of one revision suggests."""
    created: set[str] = set()
    best: tuple[int, str, str] | None = None
    for stmt in split_statements(sql):
        m = mask_literals(stmt)
        if re.search(r"\bALEMBIC_VERSION\b", m):
            continue
        got = _classify(stmt, m, created)
        if got is None:
            continue
        phase, reason = got
        if phase is None:
            return Suggestion(phase=None, reason=reason)
        rank = _RANK[phase]
        if best is None or rank > best[0]:
            best = (rank, phase, reason or short(stmt, 60))
    if best is None:
        return Suggestion(phase="expand", reason="it changes no schema",
                          line='phase = "expand"')
    _, phase, reason = best
    return Suggestion(phase=phase, reason=reason, line=f'phase = "{phase}"')
