"""Blue-green, canary and rolling against real HAProxy and real processes: a good release is
promoted without a failed request; each of the four bad releases is caught and rolled back."""

from __future__ import annotations

import pytest
from support import SteadyLoad, short_tmpdir
from support.pipeline import build_release, served_version

from prefect_delivery.blocks.errors import GateFailed
from prefect_delivery.flows.deploy import deploy

STRATEGIES = {
    "blue-green": {"kind": "blue-green", "instances": 1},
    "canary": {"kind": "canary", "instances": 1, "canary_steps": [5, 50, 100]},
    "rolling": {"kind": "rolling", "instances": 3},
}
FAULTS = ["crash", "unhealthy", "error:0.3", "slow:0.3"]


@pytest.fixture(scope="module")
def releases():
    """One good release to start from, one good release to promote, one per fault."""
    from prefect_delivery.flows.cli.demo import prepare_repo

    root = short_tmpdir("pd-rel-")
    repo = prepare_repo(root)
    store = str(root / "artifacts")
    built = {
        "v1": build_release(repo, "1.0.0", store_root=store),
        "v2": build_release(repo, "2.0.0", store_root=store),
    }
    for n, fault in enumerate(FAULTS):
        built[fault] = build_release(repo, f"3.0.{n}", fault=fault, store_root=store)
    return built


def live_env(make_env, strategy: str, stable):
    env = make_env(strategy[:3], **STRATEGIES[strategy], step_pause_s=1.5, analysis_interval_s=0.5)
    deploy(env.name, stable)
    assert served_version(env)["commit"] == stable.commit
    return env


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_good_release_is_promoted_without_a_failed_request(strategy, make_env, releases):
    env = live_env(make_env, strategy, releases["v1"])
    with SteadyLoad(env.url) as load:
        outcome = deploy(env.name, releases["v2"])
    assert outcome.status == "deployed" and outcome.verification.passed
    assert load.result.failed == 0, load.result.statuses
    assert load.result.versions["2.0.0"] > 0
    assert served_version(env)["commit"] == releases["v2"].commit
    if strategy == "canary":
        assert [a.label for a in outcome.analyses] == ["canary 5%", "canary 50%"]
        assert all(a.action.value == "promote" for a in outcome.analyses)
    if strategy == "rolling":
        assert len(outcome.new_instances) == 3
        assert [a.label for a in outcome.analyses] == ["rolling 1/3", "rolling 2/3"]
    weights = env.router.weights()
    new = {i.address for i in outcome.new_instances}
    assert all(w > 0 for a, w in weights.items() if a in new)
    assert all(w == 0 for a, w in weights.items() if a not in new)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_bad_release_is_caught_and_rolled_back(strategy, fault, make_env, releases):
    env = live_env(make_env, strategy, releases["v1"])
    stable_ids = {i.id for i in env.target.list(env.name)}
    with SteadyLoad(env.url) as load, pytest.raises(GateFailed) as info:
        deploy(env.name, releases[fault])
    # the environment is back on the stable release, with its original instances
    assert served_version(env)["commit"] == releases["v1"].commit
    assert {i.id for i in env.target.list(env.name)} == stable_ids
    shares = env.observe().shares()
    assert shares == {releases["v1"].digest: 100.0}
    failed = env.ledger().last("failed", releases[fault].digest)
    assert failed is not None
    if fault in ("crash", "unhealthy"):
        # never took traffic: not a single user request failed
        assert info.value.gate == "health"
        assert load.result.failed == 0, load.result.statuses
        assert set(load.result.versions) == {"1.0.0"}
    else:
        assert info.value.gate in ("analysis", "verification", "smoke")
    if strategy == "canary" and fault.startswith("error"):
        # caught at the first step, while the canary had 5% of the traffic
        assert info.value.gate in ("analysis", "smoke")
        if info.value.gate == "analysis":
            assert "canary 5%" in str(info.value)
