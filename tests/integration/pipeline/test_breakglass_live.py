"""Break glass against real HAProxy and real processes: `delivery status` answers without a
Prefect API, `delivery rollback` moves traffic before any bookkeeping, and a rollback preempts
a delivery in its bake (the delivery ends preempted and makes no traffic change after it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import SteadyLoad
from support.pipeline import build_release, commit_release, deliver, served_version

from prefect_delivery.flows.deploy import deploy

VENV_BIN = Path(sys.executable).parent
#: An API nobody answers, and no ephemeral server allowed: any Prefect API use fails loudly.
NO_PREFECT = {
    "PREFECT_API_URL": "http://127.0.0.1:9/api",
    "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",
}


@pytest.fixture(scope="module")
def releases():
    from support import short_tmpdir

    from prefect_delivery.flows.cli.demo import prepare_repo

    root = short_tmpdir("pd-bg-")
    repo = prepare_repo(root)
    store = str(root / "artifacts")
    return {v: build_release(repo, v, store_root=store) for v in ("1.0.0", "2.0.0")}


def delivery_cli(*args: str, extra_env: dict | None = None, timeout: float = 120):
    env = {**os.environ, **(extra_env or {})}
    started = time.perf_counter()
    run = subprocess.run(
        [str(VENV_BIN / "delivery"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    return run, time.perf_counter() - started


def test_status_reads_live_state_without_prefect(make_env, releases, state_dir):
    env = make_env("bgs")
    deploy(env.name, releases["1.0.0"])
    run, _ = delivery_cli(
        "status", "--json", "--env", env.name, "--state-dir", str(state_dir), extra_env=NO_PREFECT
    )
    assert run.returncode == 0, run.stderr[-2000:]
    (report,) = json.loads(run.stdout)
    assert report["environment"] == env.name
    assert report["live"]["commit"] == releases["1.0.0"].commit
    assert report["live"]["share"] == 100
    assert {i["weight"] > 0 for i in report["instances"]} == {True}
    # and the command's process never imported Prefect at all (nothing to start, nothing to load)
    probe = (
        "import sys; from prefect_delivery.flows.cli import main; "
        f"rc = main(['status', '--env', {env.name!r}, '--state-dir', {str(state_dir)!r}]); "
        "print('PREFECT-LOADED' if any(m == 'prefect' or m.startswith('prefect.') "
        "for m in sys.modules) else 'NO-PREFECT', rc)"
    )
    check = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **NO_PREFECT},
    )
    assert check.stdout.strip().endswith("NO-PREFECT 0"), check.stdout[-2000:] + check.stderr
    assert releases["1.0.0"].commit[:12] in check.stdout


def test_cli_rollback_moves_traffic_before_the_bookkeeping(make_env, releases, state_dir):
    env = make_env("bgr", keep_previous_s=3600)
    deploy(env.name, releases["1.0.0"])
    deploy(env.name, releases["2.0.0"])
    with SteadyLoad(env.url) as load:
        run, seconds = delivery_cli(
            "rollback", env.name, "--state-dir", str(state_dir), "--reason", "break glass test"
        )
        # when the command returns, the previous release serves already
        assert served_version(env)["commit"] == releases["1.0.0"].commit
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "all traffic on" in run.stdout and "in the background" in run.stdout
    assert load.result.failed == 0, load.result.statuses
    assert env.observe().shares() == {releases["1.0.0"].digest: 100.0}
    rolled = env.ledger().last("rolled-back", releases["2.0.0"].digest)
    assert rolled is not None and rolled.details["switched"] == "break-glass"
    # the bookkeeping follows in a flow run of its own: the report, the retired instances
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if not any(i.release.version == "2.0.0" for i in env.running()):
            break
        time.sleep(0.5)
    assert not any(i.release.version == "2.0.0" for i in env.running()), (
        "the rollback-record flow did not retire the release left"
    )
    print(f"delivery rollback (process target): {seconds:.2f} s from command to return")


def test_rollback_preempts_a_delivery_in_its_bake(hello_repo, make_env, artifact_store, state_dir):
    env = make_env("bgp", bake_s=60.0, keep_previous_s=3600)
    first = commit_release(hello_repo, "1.0.0")
    assert deliver(hello_repo, first, [env], artifact_store)[1] is None
    second = commit_release(hello_repo, "2.0.0")
    outcome: dict = {}

    def run_delivery():
        outcome["summary"], outcome["error"] = deliver(hello_repo, second, [env], artifact_store)
        outcome["ended"] = time.monotonic()

    worker = threading.Thread(target=run_delivery, daemon=True)
    worker.start()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        verified = env.ledger().last("verified")
        if verified is not None and verified.release.commit == second:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the second release was never verified")
    time.sleep(2)  # well inside its 60 s bake
    assert worker.is_alive(), "the delivery left its bake early"
    with SteadyLoad(env.url) as load:
        run, _ = delivery_cli("rollback", env.name, "--state-dir", str(state_dir))
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        switched_at = time.monotonic()
        weights_after_rollback = {a: w for a, w in env.router.weights().items() if w > 0}
        worker.join(60)
    assert not worker.is_alive(), "the preempted delivery did not stop"
    summary = outcome["summary"]
    assert summary.outcome == "preempted", (summary.outcome, summary.reason)
    assert "preempted by a rollback" in summary.reason
    assert outcome["ended"] - switched_at < 30, "the delivery noticed the preemption late"
    # no traffic change after the rollback: the same instances carry the same weights
    assert {a: w for a, w in env.router.weights().items() if w > 0} == weights_after_rollback
    assert served_version(env)["commit"] == first
    assert load.result.failed == 0, load.result.statuses
    # the slot is free: the next holder is not preempted by the old marker
    from prefect_delivery.tasks.runtime.lock import environment_lock

    with environment_lock(env.name, env.state_dir, "after-the-rollback", "refuse"):
        pass
