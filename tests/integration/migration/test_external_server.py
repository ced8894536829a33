"""A database the pipeline does not run: a team's existing PostgreSQL server, here a container
that pytest-docker brings up from tests/compose/postgres.yml (docker-compose). The pipeline
migrates it through the environment's PostgresDatabase block alone (no local cluster): the
expand goes in before the code that needs it, and stopping the environment leaves the server
alone."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest
from support import free_port
from support.migration import columns, external_server, people, revision
from support.pipeline import deliver

pytestmark = [pytest.mark.postgres, pytest.mark.docker]

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "compose" / "postgres.yml"
ADMIN = "admin"  # POSTGRES_USER in the compose file


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose is not installed (`.ci/run` installs Debian's)")
    return "docker-compose"


@pytest.fixture(scope="session")
def docker_setup() -> str:
    """Debian's docker-compose is 1.29: it has no ``--wait`` (pytest-docker's default); the
    fixture below waits until the server answers SQL instead."""
    return "up -d"


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    """The compose file, with the port and password it reads from the environment chosen
    now (the container shares the host's network: dockerd runs with --bridge=none)."""
    if not os.environ.get("MIGRATIONS_LAB_PG_IMAGE"):
        pytest.skip("MIGRATIONS_LAB_PG_IMAGE names no local PostgreSQL image (no Docker Hub)")
    os.environ["PD_COMPOSE_PG_PORT"] = str(free_port())
    os.environ["PD_COMPOSE_PG_PASSWORD"] = secrets.token_urlsafe(16)
    return str(COMPOSE_FILE)


@pytest.fixture(scope="module")
def cluster(docker_services):
    """The module's database server: the compose service, once it answers SQL."""
    server = external_server(
        "127.0.0.1",
        int(os.environ["PD_COMPOSE_PG_PORT"]),
        ADMIN,
        os.environ["PD_COMPOSE_PG_PASSWORD"],
    )

    last: list[str] = []

    def answers() -> bool:
        try:
            return server.execute("postgres", "SELECT 1") == [(1,)]
        except Exception as exc:  # noqa: BLE001 - not up yet
            last[:] = [f"{type(exc).__name__}: {exc}"]
            return False

    try:
        docker_services.wait_until_responsive(check=answers, timeout=90.0, pause=0.5)
    except Exception as exc:  # pytest-docker says only "Timeout reached"
        logs = docker_services._docker_compose.execute("logs --tail 20").decode(errors="replace")
        raise AssertionError(f"the compose PostgreSQL never answered: {last}\n{logs}") from exc
    return server


def test_a_delivery_migrates_a_server_it_does_not_run(make_db_env, schema_repo, store, cluster):
    repo, commits = schema_repo
    env = make_db_env("ext")
    assert env.database.local_cluster is None and env.database.cluster() is None

    summary, error = deliver(repo, commits[1], [env], store)
    assert error is None, summary.text()
    assert revision(cluster, env) == "0001"
    summary, error = deliver(repo, commits[2], [env], store)
    assert error is None, summary.text()
    assert revision(cluster, env) == "0002"
    assert columns(cluster, env) == ["id", "name", "first_name", "last_name"]
    assert people(env)["people"], "release 2 serves the people it reads from the server"

    # `delivery down` stops the pipeline's instances and router, and leaves the server alone
    from prefect_delivery.tasks.status import shut_down

    stopped = shut_down([env.name], [env.state_dir])
    assert f"router:{env.scope}" in stopped and f"postgres:{env.name}" not in stopped, stopped
    assert revision(cluster, env) == "0002"
