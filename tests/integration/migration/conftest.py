"""Fixtures for the migration tests: real PostgreSQL (one local cluster per module), real
HAProxy and processes, the session's Prefect server.

hello-service's four schema releases are committed once (session) into one repository and
built and tested once into one artifact store, so every module delivers the same digests and
the pipeline reuses the build and the passing test suite of a commit."""

from __future__ import annotations

import shutil

import pytest
from support import short_tmpdir
from support.migration import commit_schema_release, make_db_environment, start_cluster


@pytest.fixture(scope="session", autouse=True)
def _api(prefect_server):
    if not shutil.which("haproxy"):
        pytest.fail("haproxy is not installed; `.ci/run` and `make test` install it")
    yield


@pytest.fixture(scope="session")
def state_dir():
    path = short_tmpdir("pd-mstate-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def store(state_dir) -> str:
    from prefect_delivery.blocks.artifacts import ArtifactStore

    ArtifactStore(root=str(state_dir / "artifacts")).save("migration-artifacts", overwrite=True)
    return "migration-artifacts"


@pytest.fixture(scope="session")
def schema_repo():
    """hello-service's repository with the schema releases 1-4 committed; returns
    (repo, {release number: commit})."""
    from prefect_delivery.flows.cli.demo import prepare_repo

    root = short_tmpdir("pd-mrepo-")
    repo = prepare_repo(root)
    commits = {n: commit_schema_release(repo, n) for n in (1, 2, 3, 4)}
    yield repo, commits
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    """One local PostgreSQL cluster per module; each environment gets a database on it."""
    cluster = start_cluster()
    yield cluster
    cluster.stop()
    shutil.rmtree(cluster.folder.parent, ignore_errors=True)


@pytest.fixture
def make_db_env(state_dir, cluster):
    """Environments with a database of their own (on the module's cluster)."""
    created = []

    def make(role: str = "mig", **options):
        env = make_db_environment(state_dir, cluster, role, **options)
        created.append(env)
        return env

    yield make
    from support.pipeline import stop_environment

    for env in created:
        stop_environment(env)
