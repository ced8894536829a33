"""Backfill a table in keyset batches, one short transaction per batch.

Inside a revision (migrate phase)::

    from alembic import op
    from prefect_delivery.migrations_lab import batched_backfill

    def upgrade():
        with op.get_context().autocommit_block():
            batched_backfill(op.get_bind, "users", "id", "full_name = name",
                             batch_size=1000, pause_s=0.0, where="full_name IS NULL")

``conn_factory`` returns either an ``Engine`` (each batch runs in ``engine.begin()``) or a
``Connection`` that is in autocommit mode (Alembic's ``autocommit_block``) or not in a
transaction (each batch gets ``conn.begin()``). The connection is never closed here.

Offline (``alembic upgrade --sql``) it emits one ``DO`` block that loops over the same
batches and COMMITs after each (PostgreSQL 11+, outside a transaction block), so the
rendered SQL is runnable and the linter sees a batched backfill.

A batch that hits lock_timeout (SQLSTATE 55P03) is retried with the retry policy's backoff.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from prefect_delivery.migrations_lab.apply import LOCK_NOT_AVAILABLE, RetryPolicy
from prefect_delivery.migrations_lab.errors import LabConfigError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


class BackfillResult(BaseModel):
    table: str
    rows: int
    batches: int
    seconds: float
    retries: int = 0
    offline: bool = False

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def _quoted(name: str, what: str) -> str:
    if not _IDENT.match(name):
        raise LabConfigError(
            f"batched_backfill {what}={name!r}",
            "is not a plain identifier (letters, digits, _ and an optional schema prefix).",
            "pass the table/column name without quotes or expressions",
        )
    return ".".join(f'"{part}"' for part in name.split("."))


def _alembic_context() -> Any:
    try:
        from alembic import op

        return op.get_context()
    except (NameError, AttributeError, ImportError):
        return None


def batched_backfill(
    conn_factory: Callable[[], Connection | Engine],
    table: str,
    key: str,
    set_sql: str,
    batch_size: int = 1000,
    pause_s: float = 0.0,
    *,
    where: str | None = None,
    retry: RetryPolicy | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BackfillResult:
    """``UPDATE table SET set_sql`` over key ranges of ``batch_size`` rows, pausing
    ``pause_s`` between batches. ``key`` must be unique and indexed (usually the primary key);
    ``where`` optionally restricts the rows (e.g. ``"new_col IS NULL"``)."""
    if batch_size < 1:
        raise LabConfigError(f"batched_backfill batch_size={batch_size}", "must be >= 1.")
    if pause_s < 0:
        raise LabConfigError(f"batched_backfill pause_s={pause_s}", "must be >= 0.")
    qt, qk = _quoted(table, "table"), _quoted(key, "key")
    extra = f" AND ({where})" if where else ""
    ctx = _alembic_context()
    if ctx is not None and ctx.as_sql:
        from alembic import op

        op.execute(_offline_sql(qt, qk, set_sql, batch_size, pause_s, extra))
        return BackfillResult(table=table, rows=0, batches=0, seconds=0.0, offline=True)

    policy = retry or RetryPolicy()
    bound_first = text(
        f"SELECT max(k) FROM (SELECT {qk} AS k FROM {qt} WHERE TRUE{extra} "
        f"ORDER BY {qk} LIMIT :n) s"
    )
    bound_next = text(
        f"SELECT max(k) FROM (SELECT {qk} AS k FROM {qt} WHERE {qk} > :last{extra} "
        f"ORDER BY {qk} LIMIT :n) s"
    )
    upd_first = text(f"UPDATE {qt} SET {set_sql} WHERE {qk} <= :upper{extra}")
    upd_next = text(f"UPDATE {qt} SET {set_sql} WHERE {qk} > :last AND {qk} <= :upper{extra}")

    started = time.monotonic()
    last: Any = None
    rows = batches = retries = 0
    while True:
        attempt = 0
        while True:
            attempt += 1
            try:
                done, upper, count = _in_batch(
                    conn_factory,
                    partial(_one, last=last, n=batch_size, bf=bound_first, bn=bound_next,
                            uf=upd_first, un=upd_next),
                )
                break
            except DBAPIError as exc:
                state = getattr(exc.orig, "sqlstate", None)
                if state != LOCK_NOT_AVAILABLE or attempt >= policy.attempts:
                    raise
                retries += 1
                time.sleep(policy.delay(attempt))
        if done:
            break
        rows += count
        batches += 1
        last = upper
        if progress:
            progress(batches, rows)
        if pause_s:
            time.sleep(pause_s)
    return BackfillResult(
        table=table, rows=rows, batches=batches, retries=retries,
        seconds=round(time.monotonic() - started, 3),
    )


def _one(conn: Connection, last: Any, n: int, bf: Any, bn: Any, uf: Any, un: Any
         ) -> tuple[bool, Any, int]:
    if last is None:
        upper = conn.execute(bf, {"n": n}).scalar()
    else:
        upper = conn.execute(bn, {"n": n, "last": last}).scalar()
    if upper is None:
        return True, None, 0
    if last is None:
        result = conn.execute(uf, {"upper": upper})
    else:
        result = conn.execute(un, {"upper": upper, "last": last})
    return False, upper, int(result.rowcount or 0)


def _in_batch(conn_factory: Callable[[], Connection | Engine],
              fn: Callable[[Connection], Any]) -> Any:
    target = conn_factory()
    if isinstance(target, Engine):
        with target.begin() as conn:
            return fn(conn)
    conn = target
    autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT" or bool(
        getattr(conn.connection.dbapi_connection, "autocommit", False)
    )
    if autocommit:
        return fn(conn)
    if not conn.in_transaction():
        with conn.begin():
            return fn(conn)
    raise LabConfigError(
        "batched_backfill",
        "got a connection that is inside a transaction it did not open, so batches could "
        "not commit one by one.",
        "inside a revision call it within `with op.get_context().autocommit_block():` "
        "(pass op.get_bind); elsewhere pass an Engine",
    )


def _offline_sql(qt: str, qk: str, set_sql: str, n: int, pause_s: float, extra: str) -> str:
    pause = f"\n    PERFORM pg_sleep({pause_s});" if pause_s else ""
    return (
        "DO $migrations_lab$\n"
        f"DECLARE last_key {qt}.{qk}%TYPE; upper_key {qt}.{qk}%TYPE;\n"
        "BEGIN\n"
        "  LOOP\n"
        f"    SELECT max(k) INTO upper_key FROM (SELECT {qk} AS k FROM {qt}\n"
        f"      WHERE (last_key IS NULL OR {qk} > last_key){extra} ORDER BY {qk} LIMIT {n}) s;\n"
        "    EXIT WHEN upper_key IS NULL;\n"
        f"    UPDATE {qt} SET {set_sql}\n"
        f"      WHERE (last_key IS NULL OR {qk} > last_key) AND {qk} <= upper_key{extra};\n"
        f"    COMMIT;{pause}\n"
        "    last_key := upper_key;\n"
        "  END LOOP;\n"
        "END $migrations_lab$"
    )
