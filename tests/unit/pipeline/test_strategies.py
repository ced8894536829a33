import pytest
from pydantic import ValidationError

from prefect_delivery.blocks.settings import StrategySettings
from prefect_delivery.tasks import strategies as s


def kinds(plan):
    return [type(step).__name__ for step in plan]


def test_blue_green_plan():
    plan = s.plan(StrategySettings(kind="blue-green", instances=2), has_stable=True)
    assert kinds(plan) == ["Launch", "Baseline", "Shift", "Verify"]
    assert plan[0].count == 2 and plan[2].percent == 100


def test_first_release_has_no_baseline():
    assert kinds(s.plan(StrategySettings(), has_stable=False)) == ["Launch", "Shift", "Verify"]


def test_canary_plan_analyzes_every_partial_step():
    plan = s.plan(StrategySettings(kind="canary", canary_steps=[5, 50, 100]), has_stable=True)
    assert kinds(plan) == [
        "Launch",
        "Baseline",
        "Shift",
        "Analyze",
        "Shift",
        "Analyze",
        "Shift",
        "Verify",
    ]
    assert [p.percent for p in plan if isinstance(p, s.Shift)] == [5, 50, 100]


def test_rolling_plan_replaces_one_at_a_time():
    plan = s.plan(StrategySettings(kind="rolling", instances=3), has_stable=True)
    assert kinds(plan) == ["Baseline"] + ["Launch", "Replace", "Analyze"] * 2 + [
        "Launch",
        "Replace",
        "Verify",
    ]
    assert [p.index for p in plan if isinstance(p, s.Replace)] == [0, 1, 2]


def test_weights_for_share():
    assert s.weights_for_share(100, 1) == [200]
    assert s.weights_for_share(5, 1) == [10]
    assert s.weights_for_share(50, 2) == [50, 50]
    assert s.weights_for_share(0, 3) == [0, 0, 0]
    assert s.weights_for_share(1, 3) == [1, 1, 1]  # never silently 0 for a non-zero share


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"kind": "recreate"}, "restarts the live release in place"),
        ({"kind": "big-bang"}, "unknown strategy"),
        ({"canary_steps": [50, 5, 100]}, "not increasing"),
        ({"canary_steps": [5, 50]}, "must end at 100"),
        ({"canary_steps": [0, 100]}, "outside 1..100"),
        ({"kind": "rolling", "instances": 1}, "instances >= 2"),
    ],
)
def test_bad_strategy_settings_are_refused(kwargs, needle):
    with pytest.raises(ValidationError, match=needle):
        StrategySettings(**kwargs)


def test_min_samples_of_zero_is_refused():
    from prefect_delivery.blocks.settings import VerificationSettings

    with pytest.raises(ValidationError, match="min_samples 0 would let a release pass"):
        VerificationSettings(min_samples=0)
