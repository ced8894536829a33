"""Alembic environment of hello-service.

The database URL never comes from alembic.ini: online, the pipeline (migrations_lab's apply
runner) hands over a connection in ``config.attributes["connection"]`` that already carries
lock_timeout and statement_timeout; otherwise the URL is ``config.attributes["url"]`` or the
``DATABASE_URL`` environment variable, and the timeouts are set here. One transaction per
revision, so a revision that fails leaves the schema at the previous one.
"""

import os

from alembic import context
from prefect_delivery.migrations_lab import apply_timeouts
from sqlalchemy import create_engine

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("no database URL: set DATABASE_URL")
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _run(connection) -> None:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as connection:
            apply_timeouts(connection)
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
