"""The hand-written statistic: anytime-valid Bernoulli bounds, checked by simulation.

Each stream is looked at after EVERY outcome; a bound is valid when the streams on which it
ever excluded the true rate are at most alpha (plus Monte-Carlo slack)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prefect_delivery.tasks.judge import bounds

STREAMS = 300
STEPS = 2000


def ever_rejected(p_true: float, p0: float, side: str, alpha: float, seed: int) -> float:
    """Share of streams on which the test rejected after ANY of the STEPS outcomes.

    Exact and cheap: between two outcomes that move the count in the tested direction (a
    success for 'greater', a failure for 'less') the evidence only falls, so its running
    maximum is reached at those outcomes, and only they are evaluated."""
    rng = np.random.default_rng(seed)
    outcomes = rng.random((STREAMS, STEPS)) < p_true
    s = np.cumsum(outcomes, axis=1)
    n = np.broadcast_to(np.arange(1, STEPS + 1), s.shape)
    moving = outcomes if side == "greater" else ~outcomes
    evidence = np.full(s.shape, -np.inf)
    evidence[moving] = bounds.log_evidence(s[moving], n[moving], p0, side)
    return float((evidence >= math.log(1 / alpha)).any(axis=1).mean())


def slack(alpha: float) -> float:
    return 3 * math.sqrt(alpha * (1 - alpha) / STREAMS)


@pytest.mark.parametrize(
    "p,side",
    [
        (0.005, "greater"),
        (0.02, "greater"),
        (0.1, "greater"),
        (0.3, "less"),
        (0.95, "less"),
        (0.05, "less"),
    ],
)
def test_a_true_rate_is_rarely_rejected_when_looked_at_every_step(p, side):
    alpha = 0.05
    assert ever_rejected(p, p, side, alpha, seed=int(p * 1000) + len(side)) <= alpha + slack(alpha)


@pytest.mark.parametrize("side,p_true", [("greater", 0.03), ("less", 0.002)])
def test_a_wrong_rate_is_rejected(side, p_true):
    """The same check can fail: against a wrong p0 the bound rejects almost always."""
    assert ever_rejected(p_true, 0.01, side, 0.05, seed=3) > 0.9


def test_lower_and_upper_bounds_bracket_the_rate_and_are_tight():
    low, high = bounds.lower_bound(20, 1000, 0.01), bounds.upper_bound(20, 1000, 0.01)
    assert 0 < low < 0.02 < high < 0.05
    assert bounds.rejects(20, 1000, low * 0.95, 0.01, "greater")
    assert not bounds.rejects(20, 1000, low * 1.05, 0.01, "greater")
    assert bounds.lower_bound(0, 1000, 0.01) == 0.0
    assert bounds.upper_bound(0, 10_000, 0.01) < 0.001


def test_the_lower_bound_covers_when_inverted_at_checkpoints():
    """The CS itself (not only the test): lower_bound <= p at every checkpoint of a stream."""
    rng = np.random.default_rng(11)
    alpha, p, misses = 0.05, 0.03, 0
    for _ in range(100):
        s = np.cumsum(rng.random(2000) < p)
        misses += any(bounds.lower_bound(int(s[n - 1]), n, alpha) > p for n in range(50, 2001, 50))
    assert misses / 100 <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / 100)


def test_quantile_bounds_cover_the_true_quantile_at_every_look():
    rng = np.random.default_rng(5)
    alpha, q_true = 0.05, float(np.exp(1.0 + 0.5 * 1.6448536))  # p95 of lognormal(1, 0.5)
    misses = 0
    for _ in range(60):
        values = rng.lognormal(1.0, 0.5, 1000)
        for n in range(100, 1001, 100):
            low, high = bounds.quantile_bounds(values[:n], 0.95, alpha)
            if (low is not None and low > q_true) or (high is not None and high < q_true):
                misses += 1
                break
    assert misses / 60 <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / 60)
    low, high = bounds.quantile_bounds(rng.lognormal(1.0, 0.5, 5000), 0.95, alpha)
    assert low < q_true < high and high / low < 1.3  # and it is informative
