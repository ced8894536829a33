"""`delivery run` without --auto-approve: the run waits at the gate in this process and is
answered from elsewhere (another terminal's `delivery reject`), through the real server."""

from __future__ import annotations

import threading
import time

from support.pipeline import commit_release, deliver


def answer_when_paused(approved: bool, found: dict) -> threading.Thread:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    from prefect_delivery.blocks.errors import ConfigError
    from prefect_delivery.tasks.approval_answer import answer_approval

    def answer():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(
                            type=FlowRunFilterStateType(any_=[StateType.PAUSED])
                        )
                    )
                )
            for run in runs:
                if run.state.state_details.pause_key.startswith("approve-"):
                    found["run"] = run
                    try:  # an answer for another service answers nothing
                        answer_approval(str(run.id), True, "eve", "wrong", service="billing")
                    except ConfigError as exc:
                        found["refused"] = str(exc)
                    found["answer"] = answer_approval(
                        str(run.id), approved, "eve", "not now", service="hello-service"
                    )
                    return
            time.sleep(0.5)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def test_a_rejected_release_stops_before_production_and_raises(
    hello_repo, make_env, artifact_store
):
    from prefect_delivery.flows.delivery import DeliveryFailed

    staging, production = make_env("stg"), make_env("prd", requires_approval=True)
    sha = commit_release(hello_repo, "1.0.0")
    found: dict = {}
    thread = answer_when_paused(False, found)
    summary, error = deliver(
        hello_repo, sha, [staging, production], artifact_store, auto_approve=False
    )
    thread.join(10)

    assert isinstance(error, DeliveryFailed), summary.text()
    assert summary.outcome == "rejected"
    assert "rejected by eve: not now" in summary.reason
    assert found["answer"].environment == production.name
    assert found["answer"].service == "hello-service"
    assert "waits with a release of 'hello-service', not 'billing'" in found["refused"]
    assert production.target.list(production.name) == []
    events = [e.event for e in production.ledger().entries()]
    assert events == ["rejected"]
    assert [e.event for e in staging.ledger().entries()][-1] == "verified"
