import pytest

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.settings import StrategySettings
from prefect_delivery.tasks.analysis_run import Action, decide
from prefect_delivery.tasks.judge import Outcome, Verdict
from prefect_delivery.tasks.strategies import check_capacity, validate_split


def verdict(outcome: Outcome) -> Verdict:
    return Verdict(outcome=outcome, reason="t", kind="step", new_requests=100)


@pytest.mark.parametrize(
    "outcome,window_over,extensions,errors,expected",
    [
        (Outcome.FAILED, False, 0, 0, Action.ROLLBACK),  # caught within the interval
        (Outcome.SUCCESSFUL, False, 0, 0, Action.CONTINUE),  # the window is not over yet
        (Outcome.SUCCESSFUL, True, 0, 0, Action.PROMOTE),
        (Outcome.INCONCLUSIVE, False, 0, 0, Action.CONTINUE),
        (Outcome.INCONCLUSIVE, True, 0, 0, Action.EXTEND),
        (Outcome.INCONCLUSIVE, True, 2, 0, Action.ROLLBACK),  # extensions used up
        (Outcome.ERROR, False, 0, 1, Action.CONTINUE),  # measure again
        (Outcome.ERROR, True, 0, 3, Action.ROLLBACK),  # fail safe, never promote
    ],
)
def test_decide(outcome, window_over, extensions, errors, expected):
    assert decide(verdict(outcome), window_over, extensions, 2, errors) is expected


def test_error_never_promotes_even_at_window_end():
    assert decide(verdict(Outcome.ERROR), True, 0, 2, 1) is Action.CONTINUE


def test_capacity_for_a_canary_beside_the_stable_release():
    check_capacity("prod", StrategySettings(kind="canary", instances=1), 1, 2)
    with pytest.raises(ConfigError) as info:
        check_capacity("prod", StrategySettings(kind="canary", instances=1), 1, 1)
    message = str(info.value)
    assert "needs room for 2 instances (1 stable + 1 new)" in message and "capacity" in message


def test_split_must_add_up_to_100():
    assert validate_split({"a": 95, "b": 5}) == {"a": 95, "b": 5}
    with pytest.raises(ConfigError, match="add up to 90%"):
        validate_split({"a": 80, "b": 10})
    with pytest.raises(ConfigError, match="outside 0..100"):
        validate_split({"a": 120, "b": -20})
