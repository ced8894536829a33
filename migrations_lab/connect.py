"""Connections with timeouts, and connection failures turned into clear errors.

``lock_timeout`` and ``statement_timeout`` are set per connection at connect time (libpq
``options``), so they hold for every statement and survive rollbacks. Projects whose
``env.py`` builds its own engine call :func:`apply_timeouts` on their connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pydantic import BaseModel, Field
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import NullPool

from prefect_delivery.migrations_lab.errors import DatabaseUnavailable
from prefect_delivery.migrations_lab.urls import UrlLike, mask, reveal, scrub

_INFO_KEY = "migrations_lab.timeouts"


class TimeoutSettings(BaseModel):
    """Per-connection limits for migrations (milliseconds; 0 disables)."""

    lock_timeout_ms: int = Field(default=2000, ge=0)
    statement_timeout_ms: int = Field(default=60000, ge=0)
    connect_timeout_s: int = Field(default=10, ge=1)

    def libpq_options(self) -> str:
        return (
            f"-c lock_timeout={self.lock_timeout_ms} "
            f"-c statement_timeout={self.statement_timeout_ms}"
        )


def apply_timeouts(connection: Connection, settings: TimeoutSettings | None = None) -> None:
    """Set lock_timeout and statement_timeout on ``connection`` (call it from env.py).

    A no-op when the lab's apply runner made the connection (it already carries the
    configured limits). Commits only the transaction it had to open itself, so the
    connection is handed back to Alembic outside a transaction.
    """
    if settings is None and _INFO_KEY in connection.info:
        return
    s = settings or TimeoutSettings()
    began = not connection.in_transaction()
    connection.execute(text(f"SET lock_timeout = {int(s.lock_timeout_ms)}"))
    connection.execute(text(f"SET statement_timeout = {int(s.statement_timeout_ms)}"))
    if began:
        connection.commit()
    connection.info[_INFO_KEY] = s


def make_engine(url: UrlLike, settings: TimeoutSettings | None = None) -> Engine:
    """An engine whose every connection carries the timeouts (no pooling)."""
    s = settings or TimeoutSettings()
    engine = create_engine(
        reveal(url),
        poolclass=NullPool,
        connect_args={
            "options": s.libpq_options(),
            "connect_timeout": s.connect_timeout_s,
            "application_name": "migrations_lab",
        },
    )

    @event.listens_for(engine, "connect")
    def _mark(dbapi_conn: object, record: object) -> None:
        record.info[_INFO_KEY] = s  # type: ignore[attr-defined]

    return engine


def describe_connect_error(exc: BaseException, url: UrlLike) -> DatabaseUnavailable:
    """Turn a failed connect into a message that names the server, the cause and the fix."""
    orig = getattr(exc, "orig", exc)
    raw = scrub(" ".join(str(orig).split()), url)
    low = raw.lower()
    where = f"database {mask(url)}"
    if "password authentication failed" in low or "no password supplied" in low:
        return DatabaseUnavailable(where, "password authentication failed.",
                                   "check the user and password of the database URL")
    if "does not exist" in low and "database" in low:
        return DatabaseUnavailable(where, "the database does not exist.",
                                   "create it or fix the database name in the URL")
    if "connection refused" in low or "could not connect" in low:
        return DatabaseUnavailable(where, "nothing accepts connections there (connection "
                                   "refused).", "start the database or fix host/port")
    if "timeout" in low or "timed out" in low:
        return DatabaseUnavailable(where, "the connection timed out.",
                                   "check that the server is up and reachable")
    return DatabaseUnavailable(where, f"cannot connect: {raw}", "check the database URL")


@contextlib.contextmanager
def connect(engine: Engine, url: UrlLike) -> Iterator[Connection]:
    """``engine.connect()`` with connect failures as :class:`DatabaseUnavailable`."""
    try:
        conn = engine.connect()
    except (OperationalError, InterfaceError) as exc:
        raise describe_connect_error(exc, url) from None
    except DBAPIError as exc:
        raise describe_connect_error(exc, url) from None
    try:
        yield conn
    finally:
        conn.close()
