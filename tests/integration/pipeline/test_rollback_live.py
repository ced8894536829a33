"""Rollback: on demand (warm and retired previous release), in the bake window, fail-safe."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from support import SteadyLoad, free_port, short_tmpdir
from support.pipeline import build_release, served_version, update_env

from prefect_delivery.blocks.errors import ConfigError, GateFailed
from prefect_delivery.blocks.metrics.prometheus import PrometheusSource
from prefect_delivery.flows.deploy import deploy
from prefect_delivery.flows.rollback import rollback


@pytest.fixture(scope="module")
def releases():
    from prefect_delivery.flows.cli.demo import prepare_repo

    root = short_tmpdir("pd-rb-")
    repo = prepare_repo(root)
    store = str(root / "artifacts")
    return {v: build_release(repo, v, store_root=store) for v in ("1.0.0", "2.0.0")}


def test_rollback_of_a_warm_release_is_a_weight_change(make_env, releases):
    env = make_env("rbw", keep_previous_s=3600)
    deploy(env.name, releases["1.0.0"])
    deploy(env.name, releases["2.0.0"])
    v1_ids = {i.id for i in env.target.list(env.name) if i.release.version == "1.0.0"}
    assert v1_ids, "the previous release is kept warm inside keep_previous_s"
    with SteadyLoad(env.url) as load:
        outcome = rollback(env.name, reason="test")
    assert outcome.status == "rolled-back" and not outcome.restarted
    assert outcome.switch_ms < 500
    assert load.result.failed == 0, load.result.statuses
    assert served_version(env)["commit"] == releases["1.0.0"].commit
    assert {i.id for i in env.target.list(env.name)} == v1_ids  # same instances, no restart
    # the rolled-back release is no longer a candidate; v1 is the verified one now
    assert [r.version for r in env.ledger().verified_releases()] == ["1.0.0"]


def test_rollback_to_a_retired_release_restarts_it_from_its_digest(make_env, releases):
    env = make_env("rbr", keep_previous_s=0)
    deploy(env.name, releases["1.0.0"])
    deploy(env.name, releases["2.0.0"])
    from prefect_delivery.tasks.deploy import retire_previous

    retire_previous.fn(
        env, [i for i in env.target.list(env.name) if i.release.version == "1.0.0"], None
    )
    assert {i.release.version for i in env.target.list(env.name)} == {"2.0.0"}
    with SteadyLoad(env.url) as load:
        outcome = rollback(env.name)
    assert outcome.restarted and outcome.verification.passed
    assert load.result.failed == 0
    assert served_version(env)["commit"] == releases["1.0.0"].commit
    assert {i.release.digest for i in env.target.list(env.name)} == {releases["1.0.0"].digest}


def test_rollback_without_a_previous_release_is_refused(make_env, releases):
    env = make_env("rbn")
    deploy(env.name, releases["1.0.0"])
    with pytest.raises(ConfigError, match="no previous verified release"):
        rollback(env.name)
    assert served_version(env)["commit"] == releases["1.0.0"].commit


def test_release_that_crashes_in_the_bake_window_is_rolled_back(
    hello_repo, make_env, artifact_store
):
    from support.pipeline import commit_release, deliver

    env = make_env("bake", bake_s=6.0, keep_previous_s=3600)
    first = commit_release(hello_repo, "1.0.0")
    assert deliver(hello_repo, first, [env], artifact_store)[1] is None
    second = commit_release(hello_repo, "2.0.0")

    crashed_at: list[float] = []

    def crash_new_instance():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            fresh = [i for i in env.target.list(env.name) if i.release.commit == second and i.alive]
            verified = env.ledger().last("verified")
            if fresh and verified is not None and verified.release.commit == second:
                time.sleep(1.5)  # verified: well inside the bake window
                crashed_at.append(time.monotonic())
                os.kill(int(fresh[0].handle.split(":")[0]), signal.SIGKILL)
                return
            time.sleep(0.1)

    killer = threading.Thread(target=crash_new_instance, daemon=True)
    killer.start()
    with SteadyLoad(env.url) as load:
        summary, error = deliver(hello_repo, second, [env], artifact_store)
    killer.join(5)
    assert error is not None
    assert {s.stage: s.result for s in summary.stages}[f"monitor {env.name}"] == "rolled back"
    assert "stopped running" in summary.reason
    assert served_version(env)["commit"] == first
    # Requests fail only between the crash and the rollback (one bake interval and the weight
    # change): the only serving instance is gone and the warm release has weight 0 until the
    # rollback. Judged by when they failed, not by their share of a load whose length depends
    # on how fast the machine built and tested (under the full suite: ~5 % of a short load).
    result = load.result
    assert crashed_at, "the new instance was never crashed"
    if result.failed:
        assert result.first_failure_at >= crashed_at[0] - 0.05, "requests failed before the crash"
        assert result.outage_s < 5.0, (result.outage_s, result.statuses)
    assert env.ledger().last("rolled-back").release.commit == second


def test_prometheus_that_does_not_answer_fails_safe(make_env, releases):
    env = make_env(
        "prm", kind="canary", canary_steps=[10, 100], step_pause_s=1.0, analysis_interval_s=0.5
    )
    env = update_env(
        env, prometheus=PrometheusSource(url=f"http://127.0.0.1:{free_port()}", settle_s=0)
    )
    deploy(env.name, releases["1.0.0"])  # first release: blue-green, no analysis
    with pytest.raises(GateFailed) as info:
        deploy(env.name, releases["2.0.0"])
    assert info.value.gate == "analysis"
    assert "Error" in str(info.value) and "did not answer" in str(info.value)
    assert served_version(env)["commit"] == releases["1.0.0"].commit


def test_canary_without_room_beside_the_stable_release_is_refused(make_env, releases):
    env = make_env("cap", kind="canary")
    deploy(env.name, releases["1.0.0"])
    env = update_env(env, capacity=1)
    before = env.router.weights()
    with pytest.raises(ConfigError, match="needs room for 2 instances"):
        deploy(env.name, releases["2.0.0"])
    assert env.router.weights() == before
    assert served_version(env)["commit"] == releases["1.0.0"].commit
