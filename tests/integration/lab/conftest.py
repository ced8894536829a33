"""One ephemeral PostgreSQL cluster per test session; each test gets a fresh database
copied from the cluster's template."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from prefect_delivery.migrations_lab.errors import PostgresNotFound
from prefect_delivery.migrations_lab.postgres import Database, LocalPostgres, find_bindir

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "alembic"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalPostgres]:
    try:
        find_bindir()
    except PostgresNotFound as exc:
        pytest.skip(str(exc))
    cluster = LocalPostgres()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def db(pg_cluster: LocalPostgres) -> Iterator[Database]:
    with pg_cluster.database() as database:
        yield database


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES
