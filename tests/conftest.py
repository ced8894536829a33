"""Test-wide settings: a private Prefect home, analytics off, loopback only.

The Prefect server is shared by the whole session and started on first use (the
``prefect_server`` fixture); unit tests never start it.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

_SESSION_DIR = tempfile.mkdtemp(prefix="pd-tests-")
os.environ["PREFECT_HOME"] = os.path.join(_SESSION_DIR, "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_LOGGING_LEVEL"] = os.environ.get("PREFECT_LOGGING_LEVEL", "INFO")
os.environ.setdefault("DELIVERY_STATE_DIR", os.path.join(_SESSION_DIR, "state"))
os.environ.pop("PREFECT_API_KEY", None)

import pytest  # noqa: E402
from support import PrefectServer, free_port, session_dir  # noqa: E402

# Prefect reads its settings once, at import: the API URL must be fixed before any test imports
# prefect. The server behind it starts on first use (the `prefect_server` fixture); without it,
# a call fails loudly instead of quietly starting an ephemeral server.
_API_PORT = free_port()
os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{_API_PORT}/api"
os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "false"

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


#: Each test file's wall seconds in a recorded run (`python -m bench.suite_cpu PROFILE
#: --write-weights tests/file_weights.json`). The suite runs the longest files first: with
#: `--dist loadfile --no-loadscope-reorder`, pytest-xdist hands a worker the next file in this
#: order whenever it is free, so the long files start at once and the short ones fill the end
#: (the longest-processing-time rule), instead of a long file starting last. A file missing from
#: the record counts as the median of the recorded ones.
WEIGHTS = Path(__file__).with_name("file_weights.json")


def pytest_collection_modifyitems(config, items):  # noqa: ARG001 - pytest's hook signature
    try:
        weights = json.loads(WEIGHTS.read_text())
    except (OSError, ValueError):
        return
    if not weights:
        return
    typical = statistics.median(weights.values())
    order = {}
    for item in items:  # a file's tests keep their order (module fixtures, parametrization)
        order.setdefault(item.nodeid.split("::", 1)[0], len(order))
    items.sort(
        key=lambda item: (
            -weights.get(item.nodeid.split("::", 1)[0], typical),
            order[item.nodeid.split("::", 1)[0]],
        )
    )


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
