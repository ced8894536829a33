"""Blue-green, canary and rolling against real HAProxy and real processes: a good release is
promoted without a failed request; each of the four bad releases is caught and rolled back.

Each environment carries a second service (``greeter``) beside hello-service, live and under
load while hello-service is delivered: whatever the strategy and however the rollout ends, the
other service keeps serving its own release from its own instances, without a failed request.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from support import SteadyLoad, short_tmpdir
from support.pipeline import build_release, register, rename_service, served_version

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
    other = prepare_repo(root / "other")
    rename_service(other, "greeter")
    built["greeter"] = build_release(other, "9.0.0", store_root=store)
    return built


def live_env(make_env, strategy: str, stable):
    env = make_env(strategy[:3], **STRATEGIES[strategy], step_pause_s=1.5, analysis_interval_s=0.5)
    deploy(env.name, stable)
    assert served_version(env)["commit"] == stable.commit
    return env


class Neighbour:
    """The other service of the environment, live: its instances, weights and answers before
    hello-service's rollout, to hold it to them after (and a load on its frontend)."""

    def __init__(self, env, release):
        self.env = register(env, "greeter")
        deploy(env.name, release)
        self.release = release
        self.ids = {i.id for i in self.env.running()}
        self.weights = self.env.router.weights()
        assert served_version(self.env)["commit"] == release.commit

    def load(self) -> SteadyLoad:
        self.steady = SteadyLoad(self.env.url)
        return self.steady

    def assert_untouched(self) -> None:
        assert self.steady.result.failed == 0, self.steady.result.statuses
        assert set(self.steady.result.versions) == {"9.0.0"}
        assert {i.id for i in self.env.running()} == self.ids
        assert self.env.router.weights() == self.weights
        assert served_version(self.env)["commit"] == self.release.commit
        assert {r.service for r in self.env.ledger().verified_releases()} == {"greeter"}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_good_release_is_promoted_without_a_failed_request(strategy, make_env, releases):
    env = live_env(make_env, strategy, releases["v1"])
    neighbour = Neighbour(env, releases["greeter"])
    with SteadyLoad(env.url) as load, neighbour.load():
        outcome = deploy(env.name, releases["v2"])
    neighbour.assert_untouched()
    assert {r.service for r in env.ledger().verified_releases()} == {"hello-service"}
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
    # the other service beside it where the bad release takes traffic before it is caught
    neighbour = Neighbour(env, releases["greeter"]) if fault == "error:0.3" else None
    stable_ids = {i.id for i in env.running()}
    with ExitStack() as stack:
        load = stack.enter_context(SteadyLoad(env.url))
        if neighbour:
            stack.enter_context(neighbour.load())
        with pytest.raises(GateFailed) as info:
            deploy(env.name, releases[fault])
    if neighbour:
        neighbour.assert_untouched()
    # the environment is back on the stable release, with its original instances
    assert served_version(env)["commit"] == releases["v1"].commit
    assert {i.id for i in env.running()} == stable_ids
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
