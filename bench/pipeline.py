"""Benchmark: where the demo's time goes, and what test sharding buys.

    python -m bench.pipeline [--shards N] [--repeat R]

1. Runs the demo (hello-service release 1, then release 2, through staging and production on
   the embedded default) in a private Prefect home and state folder, then reads every flow and
   task run back from the Prefect API. Stage work is the union of the task runs' own intervals;
   orchestration overhead is the rest of the flow runs' wall time (creating runs, proposing
   states, loading blocks, subflow bookkeeping, artifacts). Ephemeral-server start-up is
   printed on its own line.
2. Runs the test stage (the hello-service suite against its built wheel) with 1 shard and with
   N shards, as mapped Prefect tasks the way the pipeline runs them, and prints the speed-up.

Figures only: nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

WORK = Path(tempfile.mkdtemp(prefix="pd-bench-", dir="/tmp"))
os.environ.setdefault("PREFECT_HOME", str(WORK / "prefect"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def union_seconds(intervals: list[tuple[datetime, datetime]]) -> float:
    """Total length covered by possibly overlapping intervals."""
    total, end = 0.0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            total += (stop - end).total_seconds()
            end = stop
    return total


def run_times(since: datetime) -> tuple[float, float, int, int]:
    """(flow wall of top-level runs, task work, flow runs, task runs) since ``since``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterStartTime,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
            limit=200,
        )
        ids = [fr.id for fr in flow_runs]
        task_runs, offset = [], 0
        while True:
            page = client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=ids)),
                limit=200,
                offset=offset,
            )
            task_runs += page
            offset += len(page)
            if len(page) < 200:
                break
    subflow_wrappers = {fr.parent_task_run_id for fr in flow_runs if fr.parent_task_run_id}
    top = [fr for fr in flow_runs if fr.parent_task_run_id is None]
    wall = sum((fr.end_time - fr.start_time).total_seconds() for fr in top)
    intervals = [
        (tr.start_time, tr.end_time)
        for tr in task_runs
        if tr.start_time and tr.end_time and tr.id not in subflow_wrappers
    ]
    return wall, union_seconds(intervals), len(flow_runs), len(task_runs)


def bench_demo() -> None:
    from prefect_delivery.blocks.paths import free_port
    from prefect_delivery.flows.cli.demo import prepare_repo, set_version
    from prefect_delivery.flows.cli.service import add_service
    from prefect_delivery.flows.cli.setup import LocalSetup, create_local_blocks
    from prefect_delivery.flows.delivery import delivery
    from prefect_delivery.tasks.status import shut_down

    t0 = time.perf_counter()
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.hello()
    startup = time.perf_counter() - t0
    create_local_blocks(
        LocalSetup(
            state_dir=str(WORK / "state"),
            staging_port=free_port(),
            production_port=free_port(),
            bake_s=5,
            keep_previous_s=0,
            instances=1,  # the figures below were measured with one instance per release
            step_pause_s=5,
            analysis_interval_s=1,
            allow_auto_approval=True,
            databases=False,  # the figures below are the pipeline's own (no migrations)
        )
    )
    repo = prepare_repo(WORK / "state")
    add_service(repo.path, ["staging", "production"], database=False)
    since = datetime.now().astimezone()
    started = time.perf_counter()
    try:
        for version in ("1.0.0", "1.1.0"):
            set_version(repo, version)
            sha = repo.commit_all(version)
            delivery(service_dir=repo.path, commit=sha, auto_approve=True)
        wall = time.perf_counter() - started
    finally:
        shut_down(["staging", "production"])
    flow_wall, work, n_flows, n_tasks = run_times(since)
    overhead = flow_wall - work
    print("Demo (2 releases, staging + production, 5 s bake, embedded default)")
    print(f"  ephemeral API start-up          {startup:7.1f} s (once per process, not in the run)")
    print(f"  demo wall time                  {wall:7.1f} s")
    print(
        f"  flow runs (top level) wall      {flow_wall:7.1f} s  "
        f"({n_flows} flow runs, {n_tasks} task runs)"
    )
    print(f"  stage work (task runs)          {work:7.1f} s")
    print(
        f"  orchestration overhead          {overhead:7.1f} s  = {overhead / flow_wall:.1%} of the "
        "run (target < 10%)"
    )


def bench_shards(shards: int, repeat: int) -> None:
    from prefect import flow, unmapped
    from prefect.futures import wait

    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.flows.cli.demo import prepare_repo, set_version
    from prefect_delivery.tasks.build import build, checkout
    from prefect_delivery.tasks.source import resolve_source
    from prefect_delivery.tasks.test import (
        durations_snapshot,
        merge,
        prepare_test_tree,
        record_durations,
        run_shard,
    )

    repo = prepare_repo(WORK / "shards")
    set_version(repo, "1.0.0")
    sha = repo.commit_all("bench")
    co = checkout.fn(resolve_source(repo.path, sha))
    release = build.fn(co, ArtifactStore(root=str(WORK / "artifacts")))
    artifact_dir = prepare_test_tree(Path(co.path), release, co.manifest.test.paths)

    durations = WORK / "durations.json"

    @flow(name="bench-test-stage")
    def stage(count: int, balanced: bool = False) -> float:
        started = time.perf_counter()
        futures = run_shard.map(
            source_dir=unmapped(co.path),
            artifact_dir=unmapped(str(artifact_dir)),
            paths=unmapped(co.manifest.test.paths),
            index=list(range(count)),
            count=unmapped(count),
            timeout_s=unmapped(600),
            durations=unmapped(durations_snapshot(durations) if balanced else None),
        )
        wait(futures)
        report = merge([f.result() for f in futures], time.perf_counter() - started)
        assert report.ok, report.summary()
        if count == 1:  # what the pipeline keeps after a run: each test's duration
            record_durations([c for f in futures for c in f.result().cases], durations)
        return report.wall_s

    one = [stage(1) for _ in range(repeat)]
    dealt = [stage(shards) for _ in range(repeat)]
    balanced = [stage(shards, balanced=True) for _ in range(repeat)]
    m1 = statistics.median(one)
    md, mb = statistics.median(dealt), statistics.median(balanced)
    print(f"\nTest stage (hello-service suite, {os.cpu_count()} CPUs, median of {repeat})")
    print(f"  {'1 shard':<32}{m1:7.2f} s")
    print(
        f"  {f'{shards} shards, first run':<32}{md:7.2f} s  ({m1 / md:.2f}x; tests dealt "
        "round-robin)"
    )
    print(
        f"  {f'{shards} shards, later runs':<32}{mb:7.2f} s  ({m1 / mb:.2f}x; balanced by the "
        "recorded durations, as every run after the first)"
    )
    print(f"  {'speed-up':<32}{m1 / mb:7.2f}x (target >= 1.7x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    if not args.skip_demo:
        bench_demo()
    bench_shards(args.shards, args.repeat)


if __name__ == "__main__":
    main()
