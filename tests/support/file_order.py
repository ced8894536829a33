"""The order the suite's files run in: longest first.

With ``--dist loadfile --no-loadscope-reorder``, pytest-xdist hands a worker the next file in
collection order whenever it is free, so sorting the files longest first starts the long ones
at once and lets the short ones fill the end (the longest-processing-time rule), instead of a
long file starting last. Each file's wall seconds come from a recorded run (``python -m
bench.suite_cpu PROFILE --write-weights tests/file_weights.json``); a file missing from the
record counts as the median of the recorded ones."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[1] / "file_weights.json"


def longest_first(items: list, weights_path: Path = WEIGHTS) -> None:
    """Sort pytest items in place by their file's recorded wall time, longest first; a file's
    tests keep their order (module fixtures, parametrization). Without a record: unchanged."""
    try:
        weights = json.loads(weights_path.read_text())
    except (OSError, ValueError):
        return
    if not weights:
        return
    typical = statistics.median(weights.values())
    order: dict[str, int] = {}
    for item in items:
        order.setdefault(item.nodeid.split("::", 1)[0], len(order))

    def key(item) -> tuple[float, int]:
        path = item.nodeid.split("::", 1)[0]
        return -weights.get(path, typical), order[path]

    items.sort(key=key)
