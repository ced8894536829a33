"""Helpers for the migration tests: one local PostgreSQL cluster per module (the same kind
``delivery setup`` makes), environments with a database of their own on it, hello-service's
schema releases, and what to read back from a database."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
import pytest

from support import free_port, short_tmpdir, unique_name
from support.pipeline import register, verification_for_tests

#: hello-service's schema releases as the demo commits them: number -> version
VERSIONS = {1: "1.0.0", 2: "1.1.0", 3: "1.2.0", 4: "1.3.0"}


def start_cluster():
    """A persistent-style local cluster in a short temp folder (stopped and removed by the
    caller): the class behind ``delivery setup``'s databases."""
    from prefect_delivery.blocks.database.local import LocalCluster
    from prefect_delivery.blocks.errors import ConfigError

    cluster = LocalCluster(short_tmpdir("pd-pg-") / "cluster")
    try:
        cluster.init()
    except ConfigError as exc:  # no PostgreSQL binaries: a skip (a failure in CI)
        pytest.skip(str(exc))
    cluster.start()
    return cluster


def external_server(host: str, port: int, user: str, password: str):
    """A PostgreSQL server the pipeline does not run (a team's own; in the tests, the one
    pytest-docker starts from tests/compose/postgres.yml), administered over TCP with the same
    SQL as the local clusters (``ServerAdmin``). Imported late: Prefect's settings first."""
    import psycopg

    from prefect_delivery.blocks.database.local import ServerAdmin

    class ExternalServer(ServerAdmin):
        def _admin(self, dbname: str = "postgres"):
            return psycopg.connect(
                host=host,
                port=port,
                user=user,
                password=password,
                dbname=dbname,
                autocommit=True,
                connect_timeout=5,
            )

        def _tcp(self) -> tuple[str, int]:
            return host, port

    return ExternalServer()


def database_for(cluster, name: str):
    """A database and role of its own on ``cluster`` (a LocalCluster or an ExternalServer),
    as a PostgresDatabase block."""
    from prefect_delivery.blocks.database import PostgresDatabase

    ident = re.sub(r"[^a-z0-9_]", "_", name.lower())
    password = secrets.token_urlsafe(12)
    cluster.ensure_database(f"db_{ident}", f"u_{ident}", password)
    return PostgresDatabase(
        url=cluster.url(f"db_{ident}", f"u_{ident}", password),
        local_cluster=str(cluster.folder) if hasattr(cluster, "folder") else None,
        lock_timeout_ms=1000,
    )


def make_db_environment(state_dir: Path, cluster, role: str, **options):
    """Save an Environment block with hello-service registered, its database on ``cluster``
    (a PostgresDatabase block ``<env>-db``); returns it as hello-service sees it."""
    from prefect_delivery.blocks.settings import StrategySettings
    from prefect_delivery.flows.cli.setup import environment

    name = unique_name(role)
    settings = StrategySettings(
        kind="blue-green",
        instances=1,
        keep_previous_s=options.pop("keep_previous_s", 0),
        step_pause_s=2,
        analysis_interval_s=0.5,
    )
    env = environment(
        name,
        free_port(),
        str(state_dir),
        settings,
        options.pop("bake_s", 0.0),
        options.pop("requires_approval", False),
        verification_for_tests(),
    )
    env.save(name, overwrite=True)
    database_for(cluster, name).save(f"{name}-db", overwrite=True)
    return register(env, "hello-service", database=f"{name}-db")


def commit_schema_release(repo, n: int, version: str | None = None) -> str:
    """Commit hello-service's schema release ``n`` (revisions 0001..000n, its code mode)."""
    from prefect_delivery.flows.cli.demo import set_schema_release, set_version

    set_schema_release(repo, n)
    set_version(repo, version or VERSIONS[n])
    return repo.commit_all(f"schema release {n}")


def commit_extra_revisions(repo, files: dict[str, str], version: str) -> str:
    """Commit the final schema (release 4) plus more revision files (bad ones, usually)."""
    from prefect_delivery.flows.cli.demo import VERSIONS_DIR, set_schema_release, set_version

    set_schema_release(repo, 4)
    set_version(repo, version)
    for name, text in files.items():
        (Path(repo.path) / VERSIONS_DIR / name).write_text(text)
    sha = repo.commit_all(f"{version}: {', '.join(files)}")
    for name in files:  # the next commit starts from the final schema again
        (Path(repo.path) / VERSIONS_DIR / name).unlink()
    return sha


def db_name(env) -> str:
    from sqlalchemy.engine import make_url

    return make_url(env.database.url.get_secret_value()).database


def revision(cluster, env) -> str | None:
    """What alembic_version of the environment's database holds (None: no table, no row)."""
    db = db_name(env)
    if not cluster.execute(db, "SELECT to_regclass('alembic_version') IS NOT NULL")[0][0]:
        return None
    rows = cluster.execute(db, "SELECT version_num FROM alembic_version")
    return rows[0][0] if rows else None


def columns(cluster, env, table: str = "people") -> list[str]:
    rows = cluster.execute(
        db_name(env),
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_name = '{table}' ORDER BY ordinal_position",
    )
    return [r[0] for r in rows]


def people(env) -> dict:
    response = httpx.get(env.url + "/api/people", timeout=5)
    response.raise_for_status()
    return response.json()


def ledger_events(env, digest: str) -> list[str]:
    return [e.event for e in env.ledger().entries() if e.release.digest == digest]


def update_database(env, **fields):
    """Change the service's database block (``<env>-db``) and save it; returns the
    environment as the service sees it again."""
    from prefect_delivery.blocks.database import PostgresDatabase
    from prefect_delivery.blocks.environment import Environment

    block = f"{env.name}-db"
    database = PostgresDatabase.load(block)
    for name, value in fields.items():
        setattr(database, name, value)
    database.save(block, overwrite=True)
    return Environment.load(env.name).for_service(env.service)
