"""pytest plugin: keep only this shard's share of the collected tests.

Loaded by the test stage with ``-p delivery_shard --shard-index I --shard-count N``. Every shard
collects the same items in the same order and applies the same split, so the shards are
disjoint and together run every test once. With ``--shard-durations FILE`` (a JSON map of
nodeid to seconds from an earlier run) the split balances time (longest first, onto the least
loaded shard); without it, tests are dealt round-robin.

With ``--shard-report FILE`` the shard writes what it collected (every test, before the split),
what it kept, and what it actually ran, so the test stage can prove that the shards together
ran exactly what was collected (a split that goes wrong must not drop tests silently).
"""

from __future__ import annotations

import json
import os


def pytest_addoption(parser):
    group = parser.getgroup("delivery-shard")
    group.addoption("--shard-index", type=int, default=0)
    group.addoption("--shard-count", type=int, default=1)
    group.addoption("--shard-durations", default=None)
    group.addoption("--shard-report", default=None)


_collected: list[str] = []
_selected: list[str] = []
_executed: dict[str, str] = {}


def assign(nodeids: list[str], count: int, durations: dict[str, float] | None) -> list[int]:
    """Shard number of each nodeid (same order as given)."""
    if count <= 1:
        return [0] * len(nodeids)
    if not durations:
        return [i % count for i in range(len(nodeids))]
    known = [durations[n] for n in nodeids if n in durations]
    default = sorted(known)[len(known) // 2] if known else 0.1
    order = sorted(range(len(nodeids)), key=lambda i: (-durations.get(nodeids[i], default), i))
    loads = [0.0] * count
    result = [0] * len(nodeids)
    for i in order:
        shard = min(range(count), key=lambda s: (loads[s], s))
        result[i] = shard
        loads[shard] += durations.get(nodeids[i], default)
    return result


def pytest_collection_modifyitems(config, items):
    count = config.getoption("--shard-count")
    index = config.getoption("--shard-index")
    _collected[:] = [item.nodeid for item in items]
    _selected[:] = _collected
    if count <= 1:
        return
    durations = None
    path = config.getoption("--shard-durations")
    if path:
        try:
            with open(path) as handle:
                durations = json.load(handle)
        except (OSError, ValueError):
            durations = None
    shards = assign([item.nodeid for item in items], count, durations)
    keep = [item for item, shard in zip(items, shards, strict=True) if shard == index]
    drop = [item for item, shard in zip(items, shards, strict=True) if shard != index]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
    _selected[:] = [item.nodeid for item in keep]


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _executed[report.nodeid] = report.outcome
    elif report.when == "teardown" and report.failed:
        _executed[report.nodeid] = "error"


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--shard-report")
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(
            {
                "collected": _collected,
                "selected": _selected,
                "executed": _executed,
                "exit": int(exitstatus),
            },
            handle,
        )
    os.replace(tmp, path)
