"""The server path end to end: CI runs a deployment with --watch, a person answers the gate.

A real Prefect server, the deployments from prefect.yaml, a process worker, real HAProxy and
instances. Each test commits its own release of hello-service into a shared repository and
asserts against what production served before it, so the tests do not depend on their order.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import httpx
import pytest
from support.pipeline import commit_release
from support.server import post_events, processes_with_env, wait_for_event, wait_until

pytestmark = pytest.mark.e2e


def params(repo, commit: str, *extra: str) -> list[str]:
    return [f"service_dir={json.dumps(repo.path)}", f"commit={commit}", *extra]


def production_before(stack) -> dict | None:
    try:
        return stack.served("production")
    except httpx.HTTPError:
        return None


def approval_artifact(stack, flow_run_id: str) -> str:
    key = "approval-production-hello-service"
    found = [a for a in stack.artifacts(flow_run_id) if a.key == key]
    assert found, [a.key for a in stack.artifacts(flow_run_id)]
    return str(found[0].data)


# ---------------------------------------------------------------------------- the gate
def test_approved_release_reaches_production_and_watch_exits_0(stack, service_repo):
    sha = commit_release(service_repo, "1.0.0")
    # A tag made of digits: `-p commit=1234567` arrives as a JSON int and must still work.
    service_repo.git("tag", "-f", "1234567", sha)
    run = stack.deployment_run("delivery/hello-service", *params(service_repo, "1234567"))
    paused = stack.wait_for_state(run.flow_run_id, {"Paused"})
    # a paused run's process waits (a suspended one's does not: see the suspend test)
    assert processes_with_env("PREFECT__FLOW_RUN_ID", run.flow_run_id, "prefect.engine")

    # What the approver sees above the form: commit, digest, staging's numbers, phase.
    key = paused.state_details.run_input_keyset["description"]
    with stack.client() as client:
        description = json.loads(client.read_flow_run_input(UUID(run.flow_run_id), key))
    for needle in (sha, "sha256:", "staging verification", "error rate", "p95 latency"):
        assert needle in description, description
    assert "requests" in description and "| migration phase |" in description

    answer = stack.delivery(
        "approve", run.flow_run_id, "--approver", "alice", "--reason", "e2e: looks good"
    )
    assert "Approved hello-service in production" in answer.stdout
    assert run.wait(600) == 0, run.output()[-4000:]
    assert "finished successfully in 'Completed'" in run.output()
    assert stack.served("production") == {"version": "1.0.0", "commit": sha}

    decision = [e for e in stack.ledger("production") if e["run_id"] == run.flow_run_id]
    assert [e["event"] for e in decision][0] == "approved"
    assert decision[0]["details"]["approver"] == "alice"
    assert "APPROVED" in approval_artifact(stack, run.flow_run_id)

    def for_this_commit(event):
        return event["resource"].get("delivery.commit") == sha

    decided = wait_for_event(stack, "delivery.release.approval-decided", for_this_commit)
    assert decided["payload"]["decision"] == "approved"
    assert decided["payload"]["approver"] == "alice"
    assert decided["resource"]["prefect.resource.id"] == "delivery.environment.production"
    roles = {r["prefect.resource.role"] for r in decided["related"]}
    assert roles >= {"commit", "artifact", "flow-run"}
    for milestone in ("approval-requested", "deployed", "promoted"):
        wait_for_event(
            stack,
            f"delivery.release.{milestone}",
            for_this_commit,
            "delivery.environment.production",
        )


def test_rejected_release_leaves_production_unchanged_and_watch_fails(stack, service_repo):
    before = production_before(stack)
    sha = commit_release(service_repo, "2.0.0")
    # the parameterised deployment, which delivers any registered service
    run = stack.deployment_run("delivery/deliver", *params(service_repo, f'"{sha}"'))
    stack.wait_for_state(run.flow_run_id, {"Paused"})
    assert "service:hello-service" in stack.flow_run(run.flow_run_id).tags  # the UI filters by it
    stack.delivery("reject", run.flow_run_id, "--approver", "bob", "--reason", "not today")

    assert run.wait(600) == 1, run.output()[-4000:]
    assert "Flow run finished in state 'Rejected'" in run.output()
    state = stack.flow_run(run.flow_run_id).state
    assert state.is_failed() and state.name == "Rejected"
    assert "rejected by bob: not today" in state.message
    assert production_before(stack) == before
    assert stack.served("staging")["commit"] == sha  # staging got it, production did not
    entries = [e for e in stack.ledger("production") if e["run_id"] == run.flow_run_id]
    assert [e["event"] for e in entries] == ["rejected"]
    assert entries[0]["details"]["approver"] == "bob"
    assert "REJECTED" in approval_artifact(stack, run.flow_run_id)

    again = stack.delivery(
        "approve", run.flow_run_id, "--approver", "bob", "--reason", "changed my mind", check=False
    )
    assert again.returncode == 2
    assert "is not waiting for approval: its state is Rejected" in again.stderr


def test_timed_out_approval_leaves_production_unchanged(stack, service_repo):
    before = production_before(stack)
    sha = commit_release(service_repo, "2.0.1")
    run = stack.deployment_run(
        "delivery/hello-service", *params(service_repo, f'"{sha}"', "approval_timeout_s=10")
    )
    stack.wait_for_state(run.flow_run_id, {"Paused"})
    assert run.wait(300) == 1, run.output()[-4000:]
    state = stack.wait_for_state(run.flow_run_id, {"ApprovalTimedOut"}, 60, final_ok=True)
    assert state.is_failed()
    assert "approval timed out after 10s" in state.message
    assert production_before(stack) == before
    entries = [e for e in stack.ledger("production") if e["run_id"] == run.flow_run_id]
    assert [e["event"] for e in entries] == ["rejected"]
    assert entries[0]["details"]["decision"] == "timed-out"
    assert "TIMED OUT" in approval_artifact(stack, run.flow_run_id)


def test_suspended_gate_holds_no_process_and_resumes_without_redoing_staging(stack, service_repo):
    with stack.client() as client:
        window = client.read_deployment_by_name("delivery/release-window")
    (schedule,) = window.schedules
    assert schedule.active and schedule.schedule.cron == "0 10 * * 1-4"
    assert window.parameters["approval_mode"] == "suspend"

    sha = commit_release(service_repo, "2.1.0")
    run = stack.deployment_run(
        "delivery/release-window", *params(service_repo, f'"{sha}"', "approval_timeout_s=600")
    )
    stack.wait_for_state(run.flow_run_id, {"Suspended"})
    wait_until(
        # the run's engine process (HAProxy, started by a run, inherits its environment)
        lambda: not processes_with_env("PREFECT__FLOW_RUN_ID", run.flow_run_id, "prefect.engine"),
        60,
        "the suspended run's process to exit",
    )
    staging_entries = len(stack.ledger("staging"))
    asked = datetime.now(UTC)
    stack.delivery("approve", run.flow_run_id, "--approver", "carol", "--reason", "window")
    answered = datetime.now(UTC)

    assert run.wait(600) == 0, run.output()[-4000:]
    assert stack.served("production") == {"version": "2.1.0", "commit": sha}
    # The run started again from the top: staging was not deployed again (no new ledger
    # lines there) and the suite was not run again (its pass is kept per commit and digest).
    assert len(stack.ledger("staging")) == staging_entries
    summary = [a for a in stack.artifacts(run.flow_run_id) if a.key == "delivery-hello-service"]
    text = str(summary[0].data)
    assert "finished earlier in this run" in text and "reused: passed" in text
    decision = [e for e in stack.ledger("production") if e["event"] == "approved"][-1]
    assert decision["run_id"] == run.flow_run_id and decision["details"]["approver"] == "carol"
    # the time of the answer, not of the restart that followed it
    decided_at = datetime.fromisoformat(decision["details"]["decided_at"])
    assert asked - timedelta(seconds=1) <= decided_at <= answered + timedelta(seconds=1)


def test_a_run_restarted_after_its_answer_delivers_the_commit_the_approver_saw(
    stack, service_repo
):
    """The release window delivers `HEAD`; HEAD moves while the run is suspended at its gate.
    The approval is for what staging verified and the approver was shown, so the restarted
    run delivers that commit, not the new HEAD."""
    shown = commit_release(service_repo, "2.2.0")
    run = stack.deployment_run(
        "delivery/release-window", *params(service_repo, '"HEAD"', "approval_timeout_s=600")
    )
    stack.wait_for_state(run.flow_run_id, {"Suspended"})
    moved = commit_release(service_repo, "2.3.0")  # HEAD moves meanwhile
    stack.delivery("approve", run.flow_run_id, "--approver", "carol", "--reason", "window")
    assert run.wait(600) == 0, run.output()[-4000:]
    assert stack.served("production") == {"version": "2.2.0", "commit": shown}
    decision = [e for e in stack.ledger("production") if e["event"] == "approved"][-1]
    assert decision["release"]["commit"] == shown != moved


def test_a_deployment_run_cannot_skip_staging_or_approve_itself(stack, service_repo):
    """The parameters a person may type into the UI's Run form or pass with -p: production
    alone, approved automatically. The policy in the production block refuses it."""
    before = production_before(stack)
    sha = commit_release(service_repo, "2.4.0")
    run = stack.deployment_run(
        "delivery/hello-service",
        *params(service_repo, f'"{sha}"', 'environments=["production"]', "auto_approve=true"),
    )
    assert run.wait(300) == 1, run.output()[-4000:]
    state = stack.flow_run(run.flow_run_id).state
    assert state.is_failed() and "promotion policy" in (state.message or ""), state.message
    assert production_before(stack) == before
    assert not [e for e in stack.ledger("production") if e["release"]["commit"] == sha]


def test_a_commit_json_turned_into_a_float_is_refused_with_the_quoted_form(stack, service_repo):
    run = stack.deployment_run("delivery/hello-service", *params(service_repo, "1e10"))
    assert run.wait(300) == 1, run.output()[-4000:]
    state = stack.flow_run(run.flow_run_id).state
    assert state.is_failed()
    assert "-p 'commit=\"1e10\"'" in stack.logs(run.flow_run_id) + (state.message or "")


# ---------------------------------------------------------------------------- answering
def test_approve_explains_unknown_unpaused_and_foreign_runs(stack):
    from prefect import flow
    from prefect.states import Completed, Paused, Running

    def approve(run_id: str):
        return stack.delivery(
            "approve", run_id, "--approver", "x", "--reason", "y", check=False, timeout=120
        )

    missing = approve(str(uuid4()))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert approve("not-a-run").returncode == 2

    @flow(name="e2e-other")
    def other():
        pass

    with stack.client() as client:
        done = client.create_flow_run(other)
        client.set_flow_run_state(done.id, Running())
        client.set_flow_run_state(done.id, Completed())
        foreign = client.create_flow_run(other)
        client.set_flow_run_state(foreign.id, Running())
        client.set_flow_run_state(foreign.id, Paused(timeout_seconds=300, pause_key="other"))

    finished = approve(str(done.id))
    assert finished.returncode == 2
    assert "is not waiting for approval: its state is Completed" in finished.stderr
    elsewhere = approve(str(foreign.id))
    assert elsewhere.returncode == 2
    assert "paused for something else" in elsewhere.stderr
    assert stack.flow_run(str(foreign.id)).state.is_paused()  # untouched


# ---------------------------------------------------------------------------- automations
def _deliver_auto(stack, repo, version: str) -> str:
    """Deliver with auto-approval, which production's block allows for this (an admin's
    change of the policy, in the block; a run cannot make it)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from prefect_delivery.blocks.environment import Environment

    sha = commit_release(repo, version)
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        production = Environment.load("production")
        production.promotion.allow_auto_approval = True
        production.save("production", overwrite=True)
    try:
        run = stack.deployment_run(
            "delivery/hello-service", *params(repo, f'"{sha}"', "auto_approve=true")
        )
        assert run.wait(600) == 0, run.output()[-4000:]
    finally:
        with temporary_settings({PREFECT_API_URL: stack.api_url}):
            production = Environment.load("production")
            production.promotion.allow_auto_approval = False
            production.save("production", overwrite=True)
    return sha


def test_a_monitors_failed_verification_rolls_production_back(stack, service_repo):
    from prefect_delivery.blocks.ledger import Ledger
    from prefect_delivery.tasks.runtime.events import resources

    ledger = Ledger(str(stack.state_dir), "production", "hello-service")
    while len(ledger.verified_releases()) < 2:
        _deliver_auto(stack, service_repo, f"3.{len(ledger.verified_releases())}.0")
    live, previous = ledger.verified_releases()[:2]
    assert stack.served("production")["commit"] == live.commit

    rolled_before = len([e for e in ledger.entries() if e.event == "rolled-back"])
    with stack.client() as client:
        deployment = client.read_deployment_by_name("rollback/production")
    started = time.time()
    # The pipeline's own verdicts (it already rolled back) must not start a rollback run...
    resource, related = resources("production", "pipeline", live)
    post_events(
        stack,
        {
            "event": "delivery.release.verification-failed",
            "resource": resource,
            "related": related,
            "payload": {"reason": "pipeline verdict", "gate": "verification"},
        },
    )
    # ...a monitor's does.
    stack.delivery("monitor-alert", "production", "--reason", "synthetic check: 5xx")

    def rollback_runs():
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        with stack.client() as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            )
        return [r for r in runs if r.created and r.created.timestamp() >= started - 1]

    # the listener moves traffic at once; seconds measured from the event's own timestamp
    wait_until(
        lambda: stack.served("production")["commit"] == previous.commit,
        30,
        "production back on the previous release",
        interval=0.05,
    )
    restored = time.time()
    alert = wait_for_event(
        stack,
        "delivery.release.verification-failed",
        lambda e: e["resource"].get("delivery.source") == "monitor",
        "delivery.environment.production",
    )
    occurred = datetime.fromisoformat(str(alert["occurred"]).replace("Z", "+00:00"))
    took = restored - occurred.timestamp()
    print(f"monitor alert -> traffic on the previous release: {took:.2f} s")
    switched = ledger.last("rolled-back", live.digest)
    assert switched is not None and switched.details["switched"] == "break-glass"
    assert "monitor" in switched.details["by"], switched.details
    assert switched.details["reason"] == "monitor: synthetic check: 5xx"

    # the trigger's run is the backstop: the alert's digest no longer serves, nothing changes
    runs = wait_until(rollback_runs, 120, "a rollback/production run")
    run = runs[0]
    stack.wait_for_state(str(run.id), {"Completed"}, 300)
    assert run.parameters["reason"] == "monitor: synthetic check: 5xx"
    # the alert named the release it saw serving, and the rollback acted on that one only
    assert run.parameters["digest"] == live.digest and run.parameters["source"] == "monitor"
    assert stack.served("production")["commit"] == previous.commit
    assert len([e for e in ledger.entries() if e.event == "rolled-back"]) == rolled_before + 1
    time.sleep(5)  # the pipeline's event went first; had it triggered, its run would exist
    assert len(rollback_runs()) == 1
    wait_for_event(
        stack,
        "delivery.release.rolled-back",
        lambda e: e["payload"].get("to_commit") == previous.commit,
        "delivery.environment.production",
    )


def test_zombie_automation_crashes_silent_runs_but_not_suspended_ones(stack):
    """The automation `delivery server-setup` installs, with a 4 s heartbeat on a test tag."""
    from prefect import flow
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Paused, Pending, Running, Suspended

    from prefect_delivery.flows.cli.server_setup import (
        ZOMBIE_AUTOMATION,
        replace_automation,
        zombie_automation,
    )

    with stack.client() as client:
        installed = client.read_automations_by_name(ZOMBIE_AUTOMATION)
    assert len(installed) == 1
    trigger = installed[0].trigger
    assert trigger.within.total_seconds() == 90
    assert "prefect.flow-run.Suspended" in trigger.expect
    assert "prefect.flow-run.Paused" not in trigger.expect

    tag = f"zombie-{uuid4().hex[:8]}"
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        replace_automation(zombie_automation(4, tag=tag, name=f"e2e {tag}"))

    @flow(name="e2e-zombie")
    def zombie():
        pass

    with stack.client() as client:
        deployment = client.read_deployment_by_name("rollback/staging")
        silent = client.create_flow_run(zombie, tags=[tag])
        paused = client.create_flow_run(zombie, tags=[tag])
        suspended = client.create_flow_run_from_deployment(
            deployment.id, tags=[tag], state=Pending()
        )
        for run in (silent, paused, suspended):
            client.set_flow_run_state(run.id, Running())
    time.sleep(1)
    post_events(
        stack,
        *(
            {
                "event": "prefect.flow-run.heartbeat",
                "resource": {"prefect.resource.id": f"prefect.flow-run.{run.id}"},
                "related": [
                    {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
                ],
            }
            for run in (silent, paused, suspended)
        ),
    )
    time.sleep(1)
    with stack.client() as client:
        client.set_flow_run_state(paused.id, Paused(timeout_seconds=600, pause_key="p"))
        result = client.set_flow_run_state(
            suspended.id, Suspended(timeout_seconds=600, pause_key="s")
        )
        assert result.status.value == "ACCEPT", result.details

    wait_until(lambda: stack.flow_run(str(silent.id)).state.is_crashed(), 90, "silent: Crashed")
    wait_until(lambda: stack.flow_run(str(paused.id)).state.is_crashed(), 60, "paused: Crashed")
    time.sleep(8)
    state = stack.flow_run(str(suspended.id)).state
    assert state.name == "Suspended", state
    with stack.client() as client:  # leave nothing for the worker or the pause expiry
        from prefect.states import Cancelled

        client.set_flow_run_state(suspended.id, Cancelled(), force=True)
