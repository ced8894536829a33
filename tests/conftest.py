"""Test-wide settings: a private Prefect home, analytics off, loopback only.

The Prefect server is shared by the whole session and started on first use (the
``prefect_server`` fixture); unit tests never start it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

#: This process's session folder and API port, chosen once: pytest-xdist's workers inherit the
#: controller's environment and choose their own; a second import of this module in the same
#: process (a test that imports ``conftest``) keeps them instead of moving the session's
#: PREFECT_API_URL off its running server.
_OWNER = "DELIVERY_TESTS_PROCESS"
_FIRST_IMPORT = os.environ.get(_OWNER) != str(os.getpid())
if _FIRST_IMPORT:
    os.environ[_OWNER] = str(os.getpid())
    os.environ["DELIVERY_TESTS_SESSION_DIR"] = tempfile.mkdtemp(prefix="pd-tests-")
_SESSION_DIR = os.environ["DELIVERY_TESTS_SESSION_DIR"]
os.environ["PREFECT_HOME"] = os.path.join(_SESSION_DIR, "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_LOGGING_LEVEL"] = os.environ.get("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("DELIVERY_STATE_DIR", os.path.join(_SESSION_DIR, "state"))
# What a session writes stays in its folder, which a passing session removes (see
# pytest_sessionfinish): the build workspaces of its commits, and uv's cache, where every
# wheel installed from this session's artifact store (a path no other session has) is unpacked.
os.environ["DELIVERY_WORK_DIR"] = os.path.join(_SESSION_DIR, "work")
os.environ["UV_CACHE_DIR"] = os.path.join(_SESSION_DIR, "uv-cache")
os.environ.pop("PREFECT_API_KEY", None)

import pytest  # noqa: E402
from support import PrefectServer, free_port, session_dir  # noqa: E402
from support.api_tls import one_ca_file  # noqa: E402
from support.file_order import longest_first  # noqa: E402

# Prefect reads its settings once, at import: the API URL must be fixed before any test imports
# prefect. The server behind it starts on first use (the `prefect_server` fixture); without it,
# a call fails loudly instead of quietly starting an ephemeral server.
if _FIRST_IMPORT:
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{free_port()}/api"
_API_PORT = int(os.environ["PREFECT_API_URL"].rsplit(":", 1)[1].split("/", 1)[0])
os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "false"
# The API above is plain HTTP: Prefect's clients (in this process and every delivery, worker
# and CLI it starts) load a one-certificate CA file instead of certifi's bundle, 15 ms of CPU
# a client (support/api_tls.py).
os.environ["PREFECT_API_SSL_CERT_FILE"] = one_ca_file(_SESSION_DIR)

session_dir.path = _SESSION_DIR


@pytest.fixture(scope="session")
def prefect_server() -> PrefectServer:
    """One real `prefect server start` for the whole session, on a free loopback port."""
    server = PrefectServer(home=os.environ["PREFECT_HOME"], port=_API_PORT)
    server.start()
    try:
        yield server
    finally:
        _drain_prefect_workers()
        server.stop()


def _drain_prefect_workers() -> None:
    """Send buffered logs and events before the server goes, so nothing retries at exit."""
    try:
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)
        EventsWorker.drain_all(timeout=10)
    except Exception:  # noqa: BLE001 - best effort at teardown
        pass


@pytest.hookimpl(trylast=True)  # after pytest's own, which tears the session's fixtures down
def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001 - pytest's hook signature
    """A passing session removes what it wrote: its folder (Prefect's home and database, state,
    build workspaces, uv's cache) and every ``short_tmpdir``. A failing one keeps them to be
    read (DELIVERY_TESTS_KEEP=1 keeps them always). Without this every run left its workspaces,
    venvs and unpacked wheels behind: 93 GB on the development machine, whose disk they filled."""
    if exitstatus != 0 or os.environ.get("DELIVERY_TESTS_KEEP") == "1":
        return
    for path in [*session_dir.made, Path(_SESSION_DIR)]:
        shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(config, items):  # noqa: ARG001 - pytest's hook signature
    longest_first(items)  # the long files start first (tests/support/file_order.py)


REQUIRED = {
    "docker": "DELIVERY_REQUIRE_DOCKER",
    "postgres": "DELIVERY_REQUIRE_POSTGRES",
    "browser": "DELIVERY_REQUIRE_BROWSER",
}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (`.ci/run` sets DELIVERY_REQUIRE_*), a skip for a missing component is a failure."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped:
        return
    for marker, variable in REQUIRED.items():
        if item.get_closest_marker(marker) and os.environ.get(variable) == "1":
            report.outcome = "failed"
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
            report.longrepr = f"{variable}=1 but the test was skipped: {reason}"
            return
