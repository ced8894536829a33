"""Attacks on the gates: each test tries to get around one, the way a hurried user (or a script)
would, against real HAProxy, processes and a Prefect server. The README's "Attacks on the
gates" names each of them."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from support import VENV_BIN, free_port, short_tmpdir
from support.pipeline import (
    answer_like_the_ui,
    build_release,
    commit_release,
    deliver,
    served_version,
    update_env,
    wait_for_gate,
)

from prefect_delivery.blocks.errors import ConfigError, GateFailed


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "delivery"), *args], capture_output=True, text=True, timeout=timeout
    )


# ---------------------------------------------------------------------------- run parameters
def test_production_alone_with_auto_approve_is_refused_on_a_fresh_setup(hello_repo):
    """`delivery setup` (the defaults a platform team gets), then a run that names only
    production and approves itself: refused before anything runs, production untouched."""
    from prefect_delivery.blocks.environment import Environment

    state = short_tmpdir("pd-setup-")
    setup = cli(
        "setup",
        "--state-dir",
        str(state),
        "--staging-port",
        str(free_port()),
        "--production-port",
        str(free_port()),
        "--no-database",
    )
    assert setup.returncode == 0, setup.stderr
    added = cli("service", "add", hello_repo.path, "--env", "staging", "--env", "production")
    assert added.returncode == 0, added.stderr
    production = Environment.load("production").for_service("hello-service")
    # production-grade defaults, written into the block
    assert production.strategy.instances == 2 and production.bake_s == 3600
    assert production.strategy.step_pause_s == 900 and production.strategy.keep_previous_s >= 3600
    assert production.promotion.upstream == "staging"
    assert production.promotion.requires_approval
    assert not production.promotion.allow_auto_approval
    assert not production.promotion.allow_self_approval
    sha = commit_release(hello_repo, "1.0.0")
    try:
        for envs in (["production"], ["production", "staging"], ["staging", "production"]):
            run = cli(
                "run",
                hello_repo.path,
                "--commit",
                sha,
                "--auto-approve",
                *sum((["--env", e] for e in envs), []),
            )
            assert run.returncode == 2, (envs, run.stdout[-2000:], run.stderr[-2000:])
            assert "promotion policy" in run.stderr
            assert "Fix:" in run.stderr
        # the reasons name the policy that refused: upstream, order, auto-approval
        assert not production.router.is_running()
        assert production.target.list("production") == []
        assert production.ledger().entries() == []
        staging = Environment.load("staging").for_service("hello-service")
        assert staging.target.list("staging") == [] and staging.ledger().entries() == []
        status = cli("status", "--json", "--env", "production")
        policy = json.loads(status.stdout)[0]["policy"]
        assert policy["upstream"] == "staging" and policy["allow_auto_approval"] is False
        assert "upstream staging" in cli("status", "--env", "production").stdout
    finally:
        cli("down", "--env", "staging", "--env", "production")


def test_the_reasons_name_the_policy(hello_repo, make_env, artifact_store):
    from prefect_delivery.tasks.promotion import PolicyRefused

    staging = make_env("stg")
    production = make_env("prd", upstream=staging.name, requires_approval=True)
    sha = commit_release(hello_repo, "1.0.0")
    with pytest.raises(PolicyRefused, match=r"upstream: stg-\d+\).*never verified"):
        deliver(hello_repo, sha, [production], artifact_store)
    with pytest.raises(PolicyRefused, match="before stg"):
        deliver(hello_repo, sha, [production, staging], artifact_store)
    with pytest.raises(PolicyRefused, match="allow_auto_approval: false"):
        deliver(hello_repo, sha, [staging, production], artifact_store, auto_approve=True)
    assert staging.ledger().entries() == [] and production.ledger().entries() == []


def test_the_deploy_and_migrate_flows_obey_the_policy_when_called_directly(
    hello_repo, make_env, artifact_store, state_dir
):
    """The Python API (or a deployment of the deploy flow) is held to the same policy."""
    from prefect_delivery.flows.deploy import deploy
    from prefect_delivery.flows.migration import migrate

    staging = make_env("stg")
    production = make_env("prd", upstream=staging.name, requires_approval=True)
    release = build_release(hello_repo, "1.0.0", store_root=str(state_dir / "artifacts"))
    with pytest.raises(GateFailed, match="was not verified in stg"):
        deploy(production.name, release)
    assert production.target.list(production.name) == []
    assert not production.router.is_running()  # refused before even the reconciliation
    deploy(staging.name, release)
    with pytest.raises(GateFailed, match="requires an approval"):
        deploy(production.name, release)
    assert production.target.list(production.name) == []
    # the migration flow refuses the same way (an environment without a database has
    # nothing to migrate and returns early; with one, the gate comes before anything)
    assert migrate(production.name, release).status == "no-database"


# ---------------------------------------------------------------------------- approvals
def test_an_answer_counts_only_for_its_release_and_from_an_approver(
    hello_repo, make_env, artifact_store
):
    """From the form (as the UI posts it): an outsider, then an answer about another digest,
    are refused and recorded, and the gate asks again; `delivery approve` refuses the
    author of the commit; an approver on the list decides."""
    from prefect_delivery.tasks.approval_answer import answer_approval

    staging = make_env("stg")
    production = make_env(
        "prd",
        upstream=staging.name,
        requires_approval=True,
        approvers=("alice", "prefect-delivery demo"),
    )
    sha = commit_release(hello_repo, "1.0.0")
    seen: set[str] = set()
    failures: list[BaseException] = []

    def approver() -> None:
        try:
            gate = wait_for_gate(seen)
            schema_digest = _shown(gate)["digest"]
            answer_like_the_ui(
                gate,
                approved=True,
                approver="mallory",
                reason="lgtm",
                commit=sha,
                digest=schema_digest,
            )
            gate = wait_for_gate(seen)
            answer_like_the_ui(
                gate,
                approved=True,
                approver="alice",
                reason="lgtm",
                commit=sha,
                digest="sha256:" + "0" * 64,
            )
            gate = wait_for_gate(seen)
            with pytest.raises(ConfigError, match="may not approve their own release"):
                answer_approval(str(gate.id), True, "prefect-delivery demo", "mine")
            with pytest.raises(ConfigError, match="its approvers are alice"):
                answer_approval(str(gate.id), True, "mallory", "again")
            answer_approval(str(gate.id), True, "alice", "CHG-1")
        except BaseException as exc:  # noqa: BLE001 - reported by the test body
            failures.append(exc)

    thread = threading.Thread(target=approver, daemon=True)
    thread.start()
    summary, error = deliver(
        hello_repo,
        sha,
        [staging, production],
        artifact_store,
        auto_approve=False,
        approval_timeout_s=240,
    )
    thread.join(30)
    assert not failures, failures
    assert error is None, summary.text()
    assert served_version(production)["commit"] == sha
    entries = production.ledger().entries()
    refused = [e for e in entries if e.event == "approval-refused"]
    assert [e.details["approver"] for e in refused] == ["mallory", "alice"]
    assert "may not approve releases" in refused[0].details["reason"]
    assert "an approval counts only for what it was shown" in refused[1].details["reason"]
    approved = [e for e in entries if e.event == "approved"]
    assert [e.details["approver"] for e in approved] == ["alice"]


def _shown(run) -> dict:
    from prefect.client.orchestration import get_client

    keyset = run.state.state_details.run_input_keyset
    with get_client(sync_client=True) as client:
        schema = json.loads(client.read_flow_run_input(run.id, keyset["schema"]))
    if isinstance(schema, str):
        schema = json.loads(schema)
    return {k: v.get("default") for k, v in schema["properties"].items()}


# ---------------------------------------------------------------------------- alerts, rollback
def test_an_alert_acts_only_on_the_release_it_names(hello_repo, make_env, artifact_store):
    from prefect_delivery.flows.rollback import rollback

    env = make_env("alr", keep_previous_s=3600)
    first = commit_release(hello_repo, "1.0.0")
    assert deliver(hello_repo, first, [env], artifact_store)[1] is None
    second = commit_release(hello_repo, "2.0.0")
    assert deliver(hello_repo, second, [env], artifact_store)[1] is None
    v2, v1 = env.ledger().verified_releases()[:2]
    weights = env.router.weights()
    with pytest.raises(ConfigError, match="names no release digest"):
        rollback(env.name, reason="alert", source="monitor")
    # an alert about the release that no longer serves (it waited behind a delivery)
    outcome = rollback(env.name, reason="stale alert", digest=v1.digest, source="monitor")
    assert outcome.status == "not-serving" and env.router.weights() == weights
    outcome = rollback(env.name, reason="alert", digest=v2.digest, source="monitor")
    assert outcome.status == "rolled-back" and served_version(env)["commit"] == first
    # the same alert again changes nothing; the release judged bad never comes back
    weights = env.router.weights()
    outcome = rollback(env.name, reason="alert again", digest=v2.digest, source="monitor")
    assert outcome.status == "not-serving" and env.router.weights() == weights
    with pytest.raises(ConfigError, match="no previous verified release"):
        rollback(env.name, reason="by hand")
    assert served_version(env)["commit"] == first


def test_a_retired_target_is_verified_before_it_gets_traffic(hello_repo, make_env, artifact_store):
    """The release to return to was retired; started again it fails (an environment change
    since: a secret that turns on a fault). Traffic never reaches it; both failures are
    said; it is not chosen again."""
    from prefect.blocks.system import Secret

    from prefect_delivery.flows.rollback import rollback

    env = make_env("rbv", keep_previous_s=0)
    first = commit_release(hello_repo, "1.0.0")
    assert deliver(hello_repo, first, [env], artifact_store)[1] is None
    second = commit_release(hello_repo, "2.0.0")
    assert deliver(hello_repo, second, [env], artifact_store)[1] is None
    assert {i.release.commit for i in env.running()} == {second}  # the first was retired
    Secret(value="error:1.0").save("rbv-fault", overwrite=True)
    env = update_env(env, instance_secrets={"HELLO_FAULT": "rbv-fault"})
    with pytest.raises(GateFailed) as info:
        rollback(env.name, reason="drill")
    assert info.value.gate == "rollback verification"
    assert "did not verify either" in str(info.value) and "Traffic stays on" in str(info.value)
    assert served_version(env)["commit"] == second
    assert {i.release.commit for i in env.running()} == {second}
    last = env.ledger().last("failed")
    assert last.release.commit == first and "rollback target" in last.details["reason"]


def test_a_crash_after_the_cutover_then_another_commit_returns_to_the_verified_release(
    hello_repo, make_env, artifact_store
):
    """Killed right after the shift to 100 % (before verification), then a different commit:
    the unverified release is in flight, not stable; the verified warm one is the baseline."""
    env = make_env("crc", keep_previous_s=3600)
    first = commit_release(hello_repo, "1.0.0")
    assert deliver(hello_repo, first, [env], artifact_store)[1] is None
    second = commit_release(hello_repo, "2.0.0")
    killed = cli_run(hello_repo, second, env, artifact_store, kill_at=f"shifted-{env.name}-100")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert served_version(env)["commit"] == second  # unverified, with all the traffic
    third = commit_release(hello_repo, "3.0.0")
    summary, error = deliver(hello_repo, third, [env], artifact_store)
    assert error is None, summary.text()
    v1 = next(r for r in env.ledger().verified_releases() if r.commit == first)
    verified = env.ledger().last("verified")
    assert verified.release.commit == third and verified.details["previous"] == v1.digest
    assert second not in {i.release.commit for i in env.running()}
    assert second not in {r.commit for r in env.ledger().verified_releases()}


def cli_run(repo, commit: str, env, store: str, kill_at: str | None = None):
    variables = dict(os.environ)
    if kill_at:
        variables["DELIVERY_KILL_AT"] = kill_at
    return subprocess.run(
        [
            str(VENV_BIN / "delivery"),
            "run",
            repo.path,
            "--commit",
            commit,
            "--auto-approve",
            "--artifact-store",
            store,
            "--env",
            env.name,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=variables,
    )


# ---------------------------------------------------------------------------- secrets
def test_a_crash_that_prints_its_secrets_is_masked_everywhere(hello_repo, make_env, artifact_store):
    from prefect.blocks.system import Secret

    token = "tok-" + os.urandom(8).hex()
    Secret(value=token).save("leaky-token", overwrite=True)
    env = update_env(make_env("lky"), instance_secrets={"PAYMENT_TOKEN": "leaky-token"})
    sha = commit_release(hello_repo, "1.0.0", fault="crash-leak")
    summary, error = deliver(hello_repo, sha, [env], artifact_store)
    assert error is not None
    assert "exited during start-up" in str(error) and "**********" in str(error)
    for text in (str(error), summary.text(), summary.markdown(), _ledger_text(env)):
        assert token not in text
    failed = env.ledger().last("failed")
    assert "**********" in failed.details["reason"]


def _ledger_text(env) -> str:
    return Path(env.ledger().path).read_text()


# ---------------------------------------------------------------------------- the test gate
def test_a_collection_error_is_a_verdict_and_is_not_retried(hello_repo, make_env, artifact_store):
    env = make_env("col")
    missing = "import hello_service.no_such_module  # noqa: F401\n\n\ndef test_x():\n    pass\n"
    bad = commit_release(hello_repo, "1.0.2", extra={"tests/test_missing.py": missing})
    summary, error = deliver(hello_repo, bad, [env], artifact_store)
    assert error is not None and isinstance(error.__cause__, GateFailed)
    assert "could not be collected" in summary.reason
    assert {s.stage: s.result for s in summary.stages}["test"] == "failed"
    assert env.target.list(env.name) == []


def test_a_split_that_drops_a_test_fails_the_gate(hello_repo, make_env, artifact_store):
    """A conftest that deselects one test in shard 1 only (a broken split): the shards no
    longer run exactly what was collected, and the gate names it."""
    env = make_env("spl")
    conftest = (Path(hello_repo.path) / "tests" / "conftest.py").read_text()
    dropper = conftest + (
        "\n\ndef pytest_collection_modifyitems(config, items):\n"
        "    if config.getoption('--shard-index', default=0) == 1 and items:\n"
        "        items.pop()\n"
    )
    bad = commit_release(hello_repo, "1.0.3", extra={"tests/conftest.py": dropper})
    summary, error = deliver(hello_repo, bad, [env], artifact_store, shards=2)
    assert error is not None
    assert "did not run exactly the" in summary.reason, summary.reason
    assert env.target.list(env.name) == []


# ---------------------------------------------------------------------------- the slot
def test_a_lost_lease_stops_the_delivery_before_its_next_traffic_change(
    hello_repo, make_env, artifact_store
):
    """The slot's lease disappears during a canary step (expired, or revoked on the server):
    the delivery makes no traffic change after that, and says why."""
    import time

    from prefect.client.orchestration import get_client

    env = make_env("lse", kind="canary", canary_steps=[25, 100], step_pause_s=4.0)
    first = commit_release(hello_repo, "1.0.0")
    assert deliver(hello_repo, first, [env], artifact_store)[1] is None
    second = commit_release(hello_repo, "2.0.0")
    seen: dict = {}

    def revoke() -> None:
        lock = Path(env.state_dir) / "locks" / f"{env.key}.lock"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            weights = env.router.weights()
            if len([w for w in weights.values() if w]) == 2:  # the canary step is on
                lease = json.loads(lock.read_text() or "{}").get("lease_id")
                if lease:
                    with get_client(sync_client=True) as client:
                        client.release_concurrency_slots_with_lease(lease)
                    seen["weights"] = weights
                    return
            time.sleep(0.1)

    thread = threading.Thread(target=revoke, daemon=True)
    thread.start()
    summary, error = deliver(hello_repo, second, [env], artifact_store)
    thread.join(10)
    assert error is not None
    assert "no longer holds its delivery slot" in str(error), str(error)
    assert env.router.weights() == seen["weights"]  # nothing moved after the lease was gone
