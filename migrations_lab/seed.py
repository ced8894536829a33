"""Seed data for round trips.

A project can bring its own seed: a ``lab_seed.py`` next to ``alembic.ini`` defining
``seed(connection, revision)`` (or a callable passed to ``check(seed=...)``). It is called
before each revision is upgraded, with the revision the database is at (None at base), on a
SQLAlchemy connection inside a transaction the lab commits.

Otherwise :func:`default_seed` inserts a few generated rows into every table it can fill:
parents before children (foreign keys point at existing rows), identity / defaulted columns
left to the database, NOT NULL columns filled by type. Columns named as old -> new pairs in
``replaces`` (same table) get the same value, as the dual-writing code of the migrate phase
would write them. A table it cannot fill (an unknown type in a NOT NULL column, a CHECK it
cannot satisfy) is skipped and named in the returned report.
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib.util
import random
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import MetaData, Table, inspect, select, types
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.project import AlembicProject

SeedHook = Callable[[Connection, "str | None"], Any]


class SeedReport(BaseModel):
    revision: str | None
    inserted: dict[str, int] = Field(default_factory=dict)
    skipped: dict[str, str] = Field(default_factory=dict)


def load_project_seed(project: AlembicProject) -> SeedHook | None:
    """``seed`` from ``lab_seed.py`` next to alembic.ini, if the project has one."""
    path = project.root / "lab_seed.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"lab_seed_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    hook = getattr(module, "seed", None)
    if not callable(hook):
        raise LabConfigError(
            str(path), "defines no callable `seed`.",
            "define `def seed(connection, revision): ...`",
        )
    return hook  # type: ignore[no-any-return]


class _Values:
    def __init__(self, rng: random.Random):
        self.rng = rng

    def for_type(self, t: Any, column: str) -> tuple[bool, Any]:
        """(ok, value) for a column type; ok False when the type is unknown."""
        r = self.rng
        token = f"{r.getrandbits(40):010x}"
        if isinstance(t, pg.ENUM) or isinstance(t, types.Enum):
            labels = list(getattr(t, "enums", []) or [])
            return (True, r.choice(labels)) if labels else (False, None)
        if isinstance(t, types.Boolean):
            return True, r.random() < 0.5
        if isinstance(t, types.SmallInteger):
            return True, r.randint(1, 30000)
        if isinstance(t, types.BigInteger):
            return True, r.randint(1, 2**62)
        if isinstance(t, types.Integer):
            return True, r.randint(1, 2**31 - 2)
        if isinstance(t, types.Numeric):
            scale = getattr(t, "scale", None) or 2
            precision = getattr(t, "precision", None) or 12
            digits = max(1, min(precision - scale, 6))
            val = decimal.Decimal(r.randint(0, 10**digits - 1)) / (10**scale)
            return True, float(val) if isinstance(t, types.Float) else val
        if isinstance(t, (pg.UUID, types.Uuid)):
            return True, uuid.UUID(int=r.getrandbits(128), version=4)
        if isinstance(t, (pg.JSONB, types.JSON)):
            return True, {"lab": token}
        if isinstance(t, types.DateTime):
            tz = getattr(t, "timezone", False)
            base = dt.datetime(2021, 1, 1, tzinfo=dt.UTC if tz else None)
            return True, base + dt.timedelta(seconds=r.randint(0, 10**8))
        if isinstance(t, types.Date):
            return True, dt.date(2021, 1, 1) + dt.timedelta(days=r.randint(0, 1500))
        if isinstance(t, types.Time):
            return True, dt.time(r.randint(0, 23), r.randint(0, 59))
        if isinstance(t, types.Interval):
            return True, dt.timedelta(minutes=r.randint(1, 10**4))
        if isinstance(t, types.LargeBinary):
            return True, r.randbytes(8)
        if isinstance(t, types.ARRAY):
            return True, []
        if isinstance(t, types.String):
            length = getattr(t, "length", None)
            value = f"{column}-{token}"
            return True, value[-length:] if length else value
        return False, None


def _order(conn: Connection, tables: list[str]) -> list[str]:
    insp = inspect(conn)
    deps = {
        t: {fk["referred_table"] for fk in insp.get_foreign_keys(t) if fk["referred_table"] != t}
        for t in tables
    }
    ordered: list[str] = []
    while deps:
        ready = sorted(t for t, d in deps.items() if not (d & set(deps)))
        if not ready:  # a cycle: take the rest in name order
            ready = sorted(deps)
        for t in ready:
            ordered.append(t)
            deps.pop(t)
    return ordered


def default_seed(
    conn: Connection,
    revision: str | None,
    *,
    rows: int = 3,
    pairs: dict[str, str | list[str]] | None = None,
    exclude: tuple[str, ...] = ("alembic_version",),
) -> SeedReport:
    """Insert ``rows`` generated rows into every table that can take them."""
    report = SeedReport(revision=revision)
    rng = random.Random(f"migrations_lab:{revision}")
    values = _Values(rng)
    insp = inspect(conn)
    names = [t for t in insp.get_table_names() if t not in exclude]
    meta = MetaData()
    same_table: dict[tuple[str, str], str] = {
        (old.split(".")[0], old.split(".")[1]): new.split(".")[1]
        for old, new in (pairs or {}).items()
        if isinstance(new, str)  # a split (a list) is left to the project's own seed
        and "." in old and "." in new and old.split(".")[0] == new.split(".")[0]
    }
    for name in _order(conn, names):
        table = Table(name, meta, autoload_with=conn)
        fk_targets = {
            fk.parent.name: fk.column for fk in table.foreign_keys
        }
        done = 0
        reason = ""
        for _ in range(rows * 3):
            if done >= rows:
                break
            row, reason = _row(conn, table, values, fk_targets, same_table)
            if row is None:
                break
            try:
                with conn.begin_nested():
                    conn.execute(table.insert().values(**row))
                done += 1
            except DBAPIError as exc:
                reason = " ".join(str(exc.orig).split())[:200]
        if done:
            report.inserted[name] = done
        else:
            report.skipped[name] = reason or "no insertable columns"
    return report


def _row(conn: Connection, table: Table, values: _Values, fk_targets: dict[str, Any],
         same_table: dict[tuple[str, str], str]) -> tuple[dict[str, Any] | None, str]:
    row: dict[str, Any] = {}
    paired = {new for (tbl, _old), new in same_table.items() if tbl == table.name}
    for col in table.columns:
        if col.computed is not None or col.identity is not None:
            continue
        if col.server_default is not None and col.name not in paired:
            continue
        if col.name in fk_targets:
            ref = fk_targets[col.name]
            found = conn.execute(
                select(ref).where(ref.isnot(None)).order_by(ref).limit(1)
                .offset(values.rng.randint(0, 2))
            ).scalar()
            if found is None:
                found = conn.execute(select(ref).where(ref.isnot(None)).limit(1)).scalar()
            if found is None and not col.nullable:
                return None, f"column {col.name} needs a row in {ref.table.name}, which is empty"
            row[col.name] = found
            continue
        ok, value = values.for_type(col.type, col.name)
        if not ok:
            if col.nullable:
                continue
            return None, f"cannot generate a value for NOT NULL column {col.name} ({col.type})"
        row[col.name] = value
    for (tbl, old), new in same_table.items():
        if tbl == table.name and old in row and new in table.columns:
            row[new] = row[old]
    return row, ""
