"""One server path for all the e2e server tests: a real Prefect server (UI on), deployments
from prefect.yaml, a process worker, HAProxy and instances started by the runs.

Shared by the session (starting it costs ~30 s); torn down even when a test fails. Its
PREFECT_HOME is a subfolder of the session's folder, separate from the rest of the suite.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from support import session_dir, short_tmpdir
from support.server import ServerStack


@pytest.fixture(scope="session")
def stack() -> ServerStack:
    if not shutil.which("haproxy"):
        pytest.fail("haproxy is not installed; `.ci/run` and `make test` install it")
    home = Path(session_dir.path or short_tmpdir("pd-e2e-")) / "e2e-server"
    server_path = ServerStack(home=home)
    try:
        server_path.start()
        yield server_path
    finally:
        server_path.stop()


@pytest.fixture(scope="session")
def service_repo():
    """A git repository holding a copy of hello-service; tests commit releases into it."""
    from prefect_delivery.flows.cli.demo import prepare_repo

    root = short_tmpdir("pd-e2e-repo-")
    repo = prepare_repo(root)
    yield repo
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests leave files for people to look at (gitignored)."""
    default = Path(__file__).resolve().parents[3] / "test-artifacts"
    path = Path(os.environ.get("DELIVERY_TEST_ARTIFACTS", default))
    path.mkdir(parents=True, exist_ok=True)
    return path
