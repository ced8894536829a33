"""Where the suite's CPU goes, per test: ``make test PYTEST_FLAGS="-p support.cpu_profile"``.

Each finished test appends one JSON line to ``$DELIVERY_CPU_PROFILE`` (default
``.delivery/cpu-profile.jsonl``): its wall time, the machine's busy CPU seconds over the
same span (every process: the test's servers, instances, subprocesses), and this pytest
process's own share. In a one-worker run the machine's figure is the test's cost; in a
parallel run the spans overlap and only the per-process share is the test's.
The process that runs the session also appends one ``"session"`` line at the end: the whole
run's wall time and the machine's busy CPU over it, the true total in a parallel run.
``python -m bench.suite_cpu`` sums a profile by file.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_started: dict[str, tuple[float, float, float]] = {}


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot (all cores; idle and iowait excluded)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / _TICKS


def _own_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _out() -> Path:
    return Path(os.environ.get("DELIVERY_CPU_PROFILE", ".delivery/cpu-profile.jsonl"))


def _append(row: dict) -> None:
    path = _out()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:  # one short write per line: xdist workers may share the file
        out.write(json.dumps(row) + "\n")


def _controls(session) -> bool:
    """The process that runs the session (not one of pytest-xdist's workers)."""
    return not hasattr(session.config, "workerinput")


#: when the session began (monotonic s, the machine's busy CPU s), in the controlling process
_session_start: tuple[float, float] | None = None


def pytest_sessionstart(session):
    global _session_start
    if _controls(session):
        _session_start = (time.monotonic(), machine_busy_s())


def pytest_sessionfinish(session, exitstatus):
    start = _session_start
    if start is None or not _controls(session):
        return
    _append(
        {
            "session": True,
            "workers": getattr(session.config.option, "numprocesses", 0) or 0,
            "exit": int(exitstatus),
            "wall_s": round(time.monotonic() - start[0], 2),
            "machine_cpu_s": round(machine_busy_s() - start[1], 2),
        }
    )


def pytest_runtest_protocol(item, nextitem):  # noqa: ARG001 - pytest's hook signature
    _started[item.nodeid] = (time.monotonic(), machine_busy_s(), _own_s())


def pytest_runtest_logfinish(nodeid, location):  # noqa: ARG001
    start = _started.pop(nodeid, None)
    if start is None:
        return
    wall, busy, own = time.monotonic() - start[0], machine_busy_s() - start[1], _own_s() - start[2]
    row = {
        "test": nodeid,
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        "wall_s": round(wall, 2),
        "machine_cpu_s": round(busy, 2),
        "pytest_cpu_s": round(own, 2),
    }
    _append(row)
