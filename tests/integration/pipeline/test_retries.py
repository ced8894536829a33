"""Retries are for faults, not verdicts: a fault that passes is retried with backoff; a failing
test or a Failed analysis is never retried."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from support import short_tmpdir
from support.pipeline import build_release, commit_release, deliver

from prefect_delivery.blocks.errors import GateFailed
from prefect_delivery.flows.deploy import deploy


def task_runs(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
    )

    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
            )
        )
        ids = [flow_run_id, *(c.id for c in children)]
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200
        )


@pytest.fixture(scope="module")
def repo_and_store():
    from prefect_delivery.flows.cli.demo import prepare_repo

    root = short_tmpdir("pd-retry-")
    return prepare_repo(root), str(root / "artifacts")


def test_a_passing_fault_is_retried_with_backoff(make_env, repo_and_store):
    repo, store = repo_and_store
    release = build_release(repo, "1.0.0", store_root=store)
    env = make_env("rty")
    wheel = Path(release.artifact.uri)
    hidden = wheel.with_suffix(".away")
    wheel.rename(hidden)  # the artifact store is briefly unavailable (a network share, say)

    def back_after_the_first_failure() -> None:
        # the share comes back once the launch has failed once (not after a fixed delay,
        # which a loaded machine may outlast before the launch even starts)
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

        deadline = time.monotonic() + 60
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                runs = client.read_task_runs(
                    task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="launch"))
                )
                if any(r.state and r.state.name == "AwaitingRetry" for r in runs):
                    break
                time.sleep(0.05)
        hidden.rename(wheel)

    threading.Thread(target=back_after_the_first_failure, daemon=True).start()
    started = time.monotonic()
    state = deploy(env.name, release, return_state=True)
    assert state.is_completed(), state.message
    launches = [
        t for t in task_runs(state.state_details.flow_run_id) if t.name.startswith("launch")
    ]
    assert len(launches) == 1
    assert launches[0].run_count == 2  # failed once (fault), retried after the backoff
    assert time.monotonic() - started >= 1.0  # the first backoff is 1 s


def test_a_failing_test_is_not_retried(hello_repo, make_env, artifact_store):
    staging = make_env("rtt")
    bad = commit_release(
        hello_repo,
        "1.0.1",
        extra={"tests/test_broken.py": "def test_broken():\n    assert False\n"},
    )
    summary, error = deliver(hello_repo, bad, [staging], artifact_store)
    assert error is not None and "test_broken" in summary.reason
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=bad))
        )
    shards = [t for t in task_runs(runs[0].id) if t.name.startswith("test shard")]
    assert shards and all(t.run_count == 1 for t in shards)


def test_a_failed_analysis_is_not_retried(make_env, repo_and_store):
    repo, store = repo_and_store
    good = build_release(repo, "2.0.0", store_root=store)
    bad = build_release(repo, "2.0.1", fault="slow:0.2", store_root=store)
    env = make_env(
        "rta", kind="canary", canary_steps=[50, 100], step_pause_s=1.5, analysis_interval_s=0.5
    )
    deploy(env.name, good)
    state = deploy(env.name, bad, return_state=True)
    assert state.is_failed()
    with pytest.raises(GateFailed):
        state.result()
    runs = task_runs(state.state_details.flow_run_id)
    analyses = [t for t in runs if t.name.startswith("analyze")]
    launches = [t for t in runs if t.name.startswith("launch")]
    assert len(analyses) == 1 and analyses[0].run_count == 1
    assert len(launches) == 1 and launches[0].run_count == 1
