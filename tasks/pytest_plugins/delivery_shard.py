"""pytest plugin: keep only this shard's share of the collected tests.

Loaded by the test stage with ``-p delivery_shard --shard-index I --shard-count N``. Every shard
collects the same items in the same order and applies the same split, so the shards are
disjoint and together run every test once. With ``--shard-durations FILE`` (a JSON map of
nodeid to seconds from an earlier run) the split balances time (longest first, onto the least
loaded shard); without it, tests are dealt round-robin.
"""

from __future__ import annotations

import json


def pytest_addoption(parser):
    group = parser.getgroup("delivery-shard")
    group.addoption("--shard-index", type=int, default=0)
    group.addoption("--shard-count", type=int, default=1)
    group.addoption("--shard-durations", default=None)


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
