"""Sum a CPU profile of the suite (``tests/support/cpu_profile.py``) by test file.

``python -m bench.suite_cpu [PROFILE] [--top N] [--write-weights tests/file_weights.json]``:
per file, the machine's busy CPU seconds, the wall seconds and the test count, largest first,
with the totals; what a parallel run can reach at best is the CPU total over the cores.
``--write-weights`` also writes each file's wall seconds to the file the suite orders its
files by (tests/support/file_order.py: longest first, so pytest-xdist's workers start the
long files first and end together); a parallel run's walls are longer than a serial one's
but keep the order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path


def by_file(rows: list[dict]) -> list[tuple[str, float, float, int]]:
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for row in rows:
        entry = sums[row["test"].split("::", 1)[0]]
        entry[0] += row["machine_cpu_s"]
        entry[1] += row["wall_s"]
        entry[2] += 1
    return sorted(((f, c, w, int(n)) for f, (c, w, n) in sums.items()), key=lambda r: -r[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite_cpu")
    parser.add_argument("profile", nargs="?", default=".delivery/cpu-profile.jsonl")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--write-weights", metavar="PATH", help="write {file: wall seconds}")
    args = parser.parse_args(argv)
    path = Path(args.profile)
    if not path.exists():
        print(
            f"no profile at {path}: record one with "
            '`make test PYTEST_FLAGS="-p support.cpu_profile"` (one worker)',
            file=sys.stderr,
        )
        return 2
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [row for row in lines if not row.get("session")]
    sessions = [row for row in lines if row.get("session")]
    if not rows:
        print(
            f"{path} holds no test: the run it records ended before its first test", file=sys.stderr
        )
        return 2
    workers = {row.get("worker", "main") for row in rows}
    if len(workers) > 1:  # the spans overlapped: each test's machine figure counts its neighbours
        print(
            f"{path} was recorded by {len(workers)} pytest-xdist workers: the machine's CPU over "
            "a test then includes the other workers' tests, so the sums below overstate (the "
            "run's own line at the end is the true total); record with one worker (WORKERS=0) "
            "for per-test costs",
            file=sys.stderr,
        )
    files = by_file(rows)
    cpu = sum(f[1] for f in files)
    wall = sum(f[2] for f in files)
    print("| file | tests | machine CPU s | wall s | share of CPU |")
    print("|---|---|---|---|---|")
    for name, c, w, n in files[: args.top]:
        print(f"| {name} | {n} | {c:.0f} | {w:.0f} | {100 * c / cpu:.1f} % |")
    cores = os.cpu_count() or 1
    if len(workers) > 1:
        print(
            f"\n{len(rows)} tests, {len(files)} files, {wall / 60:.1f} minutes of tests in "
            f"{len(workers)} workers (the machine's CPU per test overlaps: see the run's line)"
        )
    else:
        print(
            f"\n{len(rows)} tests, {len(files)} files: {cpu / 60:.1f} CPU-minutes in "
            f"{wall / 60:.1f} minutes of tests ({cpu / wall:.2f} cores busy on average); on "
            f"{cores} cores no split of this work takes less than {cpu / cores / 60:.1f} minutes"
        )
    for run in sessions:  # the machine over the whole run: true however many workers ran
        print(
            f"the run ({run['workers'] or 'no'} xdist workers, exit {run['exit']}): "
            f"{run['wall_s'] / 60:.1f} minutes, the machine busy {run['machine_cpu_s'] / 60:.1f} "
            f"CPU-minutes ({run['machine_cpu_s'] / run['wall_s']:.2f} of {cores} cores on average)"
        )
    if args.write_weights:
        weights = {name: round(w, 1) for name, _c, w, _n in sorted(files)}
        Path(args.write_weights).write_text(json.dumps(weights, indent=1) + "\n")
        print(f"wrote the wall seconds of {len(weights)} files to {args.write_weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
