"""The bake with the shipped thresholds, against real HAProxy and real processes: a regression
that starts late in the bake (errors, latency) is caught within the judge's sliding window and
rolled back to the warm previous release; a good release keeps its bake."""

from __future__ import annotations

import pytest
from support import SteadyLoad
from support.pipeline import commit_release, deliver, served_version, update_env

#: short windows so the test is quick; the judge's window is what bounds detection time (a
#: regression is caught within 1.5 windows of its start)
BAKE_S = 40.0
WINDOW_S = 10.0


def bake_env(make_env, role: str, hello_repo, artifact_store):
    """An environment serving release 1.0.0 (delivered with a 2-s bake: its bake is not what
    these tests watch), then set to bake for BAKE_S seconds in WINDOW_S windows."""
    env = make_env(role, bake_s=2.0, keep_previous_s=3600)
    first = commit_release(hello_repo, "1.0.0")
    assert deliver(hello_repo, first, [env], artifact_store)[1] is None
    env = update_env(env, bake_s=BAKE_S, verification__bake_window_s=WINDOW_S)
    return env, first


@pytest.mark.parametrize("fault", ["late:15:error:0.2", "late:15:slow:0.2"])
def test_a_regression_that_starts_late_in_the_bake_is_rolled_back(
    fault, hello_repo, make_env, artifact_store
):
    env, first = bake_env(make_env, "lbk", hello_repo, artifact_store)
    bad = commit_release(hello_repo, "2.0.0", fault=fault)
    with SteadyLoad(env.url) as load:
        summary, error = deliver(hello_repo, bad, [env], artifact_store)
    assert error is not None, "the late regression was kept"
    stages = {s.stage: s for s in summary.stages}
    monitor = stages[f"monitor {env.name}"]
    assert monitor.result == "rolled back", (monitor.result, monitor.detail)
    assert "window" in summary.reason, summary.reason
    assert served_version(env)["commit"] == first
    assert env.ledger().last("rolled-back").release.commit == bad
    # users saw the regression only between its start and the rollback
    assert load.result.requests > 0


def test_a_good_release_keeps_its_bake(hello_repo, make_env, artifact_store):
    env, _first = bake_env(make_env, "gbk", hello_repo, artifact_store)
    second = commit_release(hello_repo, "2.0.0")
    summary, error = deliver(hello_repo, second, [env], artifact_store)
    assert error is None, summary.reason
    assert env.ledger().baked(env.observe().serving().digest)
    assert served_version(env)["commit"] == second


def test_the_bake_measures_through_the_routers_counters(hello_repo, make_env, artifact_store):
    """The bake reads the environment's metric sources, HAProxy's counters among them: with the
    probes switched off, every request the bake counts is one of the users' (none of its own),
    counted by the router."""
    from prefect import flow

    from prefect_delivery.tasks.monitor import bake

    env = make_env("rsb", keep_previous_s=3600)
    first = commit_release(hello_repo, "1.0.0")
    assert deliver(hello_repo, first, [env], artifact_store)[1] is None
    second = commit_release(hello_repo, "2.0.0")
    assert deliver(hello_repo, second, [env], artifact_store)[1] is None
    running = env.target.list(env.name)
    new = [i for i in running if i.release.commit == second]
    old = [i for i in running if i.release.commit == first]
    assert new and old, [i.release.commit[:8] for i in running]
    env.probes = None  # the router's counters are the only source left
    assert [type(s).__name__ for s in env.metric_sources()] == ["RouterStatsSource"]

    @flow
    def bake_only():
        return bake(env, new[0].release, new, old, duration_s=4.0, interval_s=1.0)

    with SteadyLoad(env.url) as load:
        result = bake_only()
    samples = result.samples
    assert samples is not None and samples.source == "router new", samples.source
    assert 0 < samples.requests <= load.result.requests, (samples.requests, load.result.requests)
    assert not samples.latencies_ms  # no probe of its own: counts, not per-request latencies
