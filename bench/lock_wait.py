"""How long do writes wait while a column changes type under load: safe path vs naive.

    python -m bench.lock_wait [--rows 1000000] [--batch-size 10000] [--pause-ms 5]

On an ephemeral PostgreSQL (127.0.0.1 only), a table of ``--rows`` rows takes a steady write
load from a writer thread (small UPDATEs and INSERTs, each timed). The same change --
``balance integer`` becomes a ``bigint NOT NULL`` -- is made two ways:

- safe: expand (ADD COLUMN balance_v2 bigint, nullable, under lock_timeout with retries; the
  writer then dual-writes), migrate (migrations_lab.batched_backfill in keyset batches),
  contract-style finish (CHECK ... NOT VALID, VALIDATE, SET NOT NULL without a scan);
- naive: ``ALTER COLUMN balance TYPE bigint`` (rewrites the table under ACCESS EXCLUSIVE), and
  a one-transaction ADD COLUMN + UPDATE + SET NOT NULL.

Prints max write wait, p99 write latency and duration per path, the backfill throughput and
whether every write during the safe path stayed under lock_timeout. No assertions; bounded
by ``--budget-s`` (default 170 s).
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from prefect_delivery.migrations_lab import RetryPolicy, TimeoutSettings, batched_backfill
from prefect_delivery.migrations_lab.connect import make_engine
from prefect_delivery.migrations_lab.postgres import LocalPostgres


def _conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@dataclass
class Writer:
    """Small writes in a loop on one table; every write's latency is recorded."""

    conninfo: str
    table: str
    rows: int
    interval_s: float = 0.002
    dual_write: bool = False
    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    errors: int = 0

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=120)

    def _run(self) -> None:
        rng = random.Random(7)
        next_id = self.rows + 1_000_000 + rng.randint(0, 10**6) * 10
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute("SET statement_timeout = 0")
            conn.execute("SET lock_timeout = 0")
            while not self._stop.is_set():
                if rng.random() < 0.7:
                    key = rng.randint(1, self.rows)
                    sql = (
                        f"UPDATE {self.table} SET balance = balance + 1"
                        + (", balance_v2 = balance + 1" if self.dual_write else "")
                        + " WHERE id = %s"
                    )
                    params: tuple[int, ...] = (key,)
                else:
                    next_id += 1
                    cols = "id, balance" + (", balance_v2" if self.dual_write else "")
                    vals = "%s, 0" + (", 0" if self.dual_write else "")
                    sql = f"INSERT INTO {self.table} ({cols}) VALUES ({vals})"
                    params = (next_id,)
                started = time.monotonic()
                try:
                    conn.execute(sql, params)  # type: ignore[arg-type]
                except psycopg.Error:
                    self.errors += 1
                self.samples.append((started, time.monotonic() - started))
                time.sleep(self.interval_s)

    def window(self, t0: float, t1: float) -> list[float]:
        return [lat for start, lat in self.samples if t0 <= start <= t1]


@dataclass
class Row:
    name: str
    latencies: list[float]
    seconds: float

    @property
    def max_ms(self) -> float:
        return max(self.latencies, default=0.0) * 1000

    @property
    def p99_ms(self) -> float:
        if len(self.latencies) < 2:
            return self.max_ms
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[98] * 1000


def load(engine: Engine, table: str, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(
            text(
                f"CREATE TABLE {table} (id bigint PRIMARY KEY, balance integer NOT NULL, note text)"
            )
        )
        conn.execute(
            text(
                f"INSERT INTO {table} SELECT g, (g % 1000)::int, 'row ' || g "
                f"FROM generate_series(1, {rows}) g"
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM ANALYZE {table}"))


def ddl(engine: Engine, sql: str, retry: RetryPolicy) -> int:
    """Run one DDL statement under the engine's lock_timeout; retry on 55P03."""
    for attempt in range(1, retry.attempts + 1):
        try:
            with engine.begin() as conn:
                conn.execute(text(sql))
            return attempt
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03" or attempt == retry.attempts:
                raise
            time.sleep(retry.delay(attempt))
    return retry.attempts


def timed(writer: Writer, name: str, fn: Callable[[], object]) -> Row:
    t0 = time.monotonic()
    fn()
    t1 = time.monotonic()
    time.sleep(0.05)  # let a write that was blocked until the end finish and be recorded
    return Row(name, writer.window(t0, t1), t1 - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.lock_wait")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--pause-ms", type=float, default=5.0)
    ap.add_argument("--lock-timeout-ms", type=int, default=2000)
    ap.add_argument("--budget-s", type=float, default=170.0)
    args = ap.parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    timeouts = TimeoutSettings(lock_timeout_ms=args.lock_timeout_ms, statement_timeout_ms=0)
    retry = RetryPolicy(attempts=8, initial_delay_s=0.2)

    def left() -> float:
        return deadline - time.monotonic()

    with LocalPostgres(settings={"max_wal_size": "4GB", "shared_buffers": "256MB"}) as pg:
        db = pg.create_database("bench")
        url = db.url.get_secret_value()
        engine = make_engine(url, timeouts)
        started = time.monotonic()
        load(engine, "safe_t", args.rows)
        load(engine, "naive_t", args.rows)
        load(engine, "naive2_t", args.rows)
        print(
            f"loaded 3 x {args.rows:,} rows in {time.monotonic() - started:.1f}s "
            f"(PostgreSQL {pg.server_version_num}, 127.0.0.1:{pg.port})"
        )

        rows: list[Row] = []

        # baseline: the load alone
        writer = Writer(_conninfo(url), "safe_t", args.rows).start()
        time.sleep(2.0)
        rows.append(timed(writer, "no migration (baseline, 2 s)", lambda: time.sleep(2.0)))

        # safe path on safe_t
        backfill = {}

        def safe() -> None:
            ddl(engine, "ALTER TABLE safe_t ADD COLUMN balance_v2 bigint", retry)
            writer.dual_write = True  # the code of the expand release writes both
            time.sleep(0.05)
            backfill["r"] = batched_backfill(
                lambda: engine,
                "safe_t",
                "id",
                "balance_v2 = balance",
                batch_size=args.batch_size,
                pause_s=args.pause_ms / 1000,
                where="balance_v2 IS DISTINCT FROM balance",
                retry=retry,
            )
            ddl(
                engine,
                "ALTER TABLE safe_t ADD CONSTRAINT ck_v2 CHECK (balance_v2 IS NOT NULL) NOT VALID",
                retry,
            )
            ddl(engine, "ALTER TABLE safe_t VALIDATE CONSTRAINT ck_v2", retry)
            ddl(engine, "ALTER TABLE safe_t ALTER COLUMN balance_v2 SET NOT NULL", retry)
            ddl(engine, "ALTER TABLE safe_t DROP CONSTRAINT ck_v2", retry)

        rows.append(timed(writer, "safe: expand + batched backfill + validated NOT NULL", safe))
        writer.stop()
        errors_safe = writer.errors

        naive_plan = [
            (
                "naive: ALTER COLUMN balance TYPE bigint (rewrite)",
                "naive_t",
                ["ALTER TABLE naive_t ALTER COLUMN balance TYPE bigint"],
            ),
            (
                "naive: one transaction ADD COLUMN + UPDATE + SET NOT NULL",
                "naive2_t",
                [
                    "ALTER TABLE naive2_t ADD COLUMN balance_v2 bigint",
                    "UPDATE naive2_t SET balance_v2 = balance",
                    "ALTER TABLE naive2_t ALTER COLUMN balance_v2 SET NOT NULL",
                ],
            ),
        ]
        naive_engine = make_engine(url, TimeoutSettings(lock_timeout_ms=0, statement_timeout_ms=0))
        for name, table, statements in naive_plan:
            if left() < 30:
                print(f"skipped {name!r}: time budget")
                continue
            writer = Writer(_conninfo(url), table, args.rows).start()
            time.sleep(1.0)

            def naive(statements: list[str] = statements) -> None:
                with naive_engine.begin() as conn:
                    for sql in statements:
                        conn.execute(text(sql))

            rows.append(timed(writer, name, naive))
            writer.stop()
        naive_engine.dispose()
        engine.dispose()

    print()
    print(
        f"{'path':<58} {'max write wait ms':>18} {'p99 write ms':>13} {'writes':>7} "
        f"{'duration s':>11}"
    )
    for row in rows:
        print(
            f"{row.name:<58} {row.max_ms:>18.1f} {row.p99_ms:>13.2f} "
            f"{len(row.latencies):>7} {row.seconds:>11.2f}"
        )
    r = backfill.get("r")
    if r is not None:
        print(
            f"\nbackfill: {r.rows:,} rows in {r.batches} batches of {args.batch_size:,} "
            f"(pause {args.pause_ms:g} ms) in {r.seconds:.2f}s = {r.rows_per_s:,.0f} rows/s, "
            f"{r.retries} lock-timeout retries"
        )
    safe_row = rows[1]
    verdict = "yes" if safe_row.max_ms < args.lock_timeout_ms else "NO"
    print(
        f"safe path stayed under lock_timeout ({args.lock_timeout_ms} ms): {verdict} "
        f"(longest write wait {safe_row.max_ms:.1f} ms; writer errors {errors_safe})"
    )


if __name__ == "__main__":
    main()
