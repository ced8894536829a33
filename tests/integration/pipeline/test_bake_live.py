"""The bake with the shipped thresholds, against real HAProxy and real processes: a regression
that starts late in the bake (errors, latency) is caught within the judge's sliding window and
rolled back to the warm previous release; a good release keeps its bake."""

from __future__ import annotations

import pytest
from support import SteadyLoad
from support.pipeline import commit_release, deliver, served_version

#: short windows so the test is quick; the judge's window is what bounds detection time
BAKE_S = 60.0
WINDOW_S = 20.0


def bake_env(make_env, role: str):
    env = make_env(role, bake_s=BAKE_S, keep_previous_s=3600)
    env.verification.bake_window_s = WINDOW_S
    env.save(env.name, overwrite=True)
    return env


@pytest.mark.parametrize("fault", ["late:15:error:0.2", "late:15:slow:0.2"])
def test_a_regression_that_starts_late_in_the_bake_is_rolled_back(
    fault, hello_repo, make_env, artifact_store
):
    env = bake_env(make_env, "lbk")
    first = commit_release(hello_repo, "1.0.0")
    assert deliver(hello_repo, first, [env], artifact_store)[1] is None
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
    env = bake_env(make_env, "gbk")
    first = commit_release(hello_repo, "1.0.0")
    assert deliver(hello_repo, first, [env], artifact_store)[1] is None
    second = commit_release(hello_repo, "2.0.0")
    summary, error = deliver(hello_repo, second, [env], artifact_store)
    assert error is None, summary.reason
    assert env.ledger().baked(env.observe().serving().digest)
    assert served_version(env)["commit"] == second
