"""The judge's behaviour: A/A passes, each kind of regression fails, and the verdicts say why."""

from __future__ import annotations

import re

import numpy as np
import pytest

from prefect_delivery.tasks.judge import (
    Analysis,
    JudgePolicy,
    Observations,
    Outcome,
    ReferenceFigures,
    ServiceMetric,
)


def run(streams, policy=None, intervals=24, **kwargs):
    analysis = Analysis(policy or JudgePolicy())
    verdict = None
    for k in range(intervals):
        verdict = analysis.update(*streams.pair(5.0 * k, **kwargs))
        if verdict.outcome is Outcome.FAILED:
            return verdict, k
    return verdict, None


def test_a_a_streams_do_not_fail_under_common_contention(streams):
    failed = [run(streams)[0] for _ in range(30)]
    assert all(v.outcome is Outcome.SUCCESSFUL for v in failed), [v.reason for v in failed]


@pytest.mark.parametrize(
    "kwargs,intervals,needle",
    [
        ({"new_errors": 0.05}, 1, "error rate"),
        ({"new_errors": 0.02}, 24, "error rate"),
        ({"new_scale": 1.5}, 12, "latency"),
        ({"new_scale": 1.2}, 24, "p50"),
    ],
)
def test_each_kind_of_regression_fails(streams, kwargs, intervals, needle):
    for _ in range(5):
        verdict, at = run(streams, intervals=intervals, **kwargs)
        assert verdict.outcome is Outcome.FAILED, verdict.reason
        assert needle in verdict.reason or any(needle in m.name for m in verdict.metrics)


def test_forty_nine_failures_of_forty_nine_requests_fail_without_min_samples():
    new = Observations.from_requests(np.full(49, 3.0), np.full(49, 500))
    stable = Observations.from_requests(np.full(49, 3.0), np.full(49, 200))
    verdict = Analysis(JudgePolicy(min_samples=200)).update(new, stable)
    assert verdict.outcome is Outcome.FAILED
    assert "49/49" in verdict.reason


def test_a_baseline_of_five_requests_is_inconclusive_not_successful(streams):
    verdict = Analysis(JudgePolicy()).update(*streams.pair(0.0, n=1000, stable_n=5))
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "only 5 requests on the stable release" in verdict.reason
    enough = Analysis(JudgePolicy()).update(*streams.pair(0.0, n=1000, stable_n=1000))
    assert enough.outcome is Outcome.SUCCESSFUL


def test_too_few_new_requests_are_inconclusive(streams):
    verdict = Analysis(JudgePolicy()).update(*streams.pair(0.0, n=10, stable_n=1000))
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "only 10 requests on the new release" in verdict.reason


def test_the_reason_line_carries_the_numbers(streams):
    verdict, _ = run(streams, intervals=1, new_errors=0.05)
    assert re.search(
        r"error rate \d+\.\d % vs stable 0\.0 % \(\d+/1000\), 99\.875 % lower bound "
        r"\d+\.\d % > limit 1 %",
        verdict.reason,
    ), verdict.reason
    verdict, _ = run(streams, intervals=24, new_scale=1.5)
    assert re.search(
        r"p\d+ \+\d+ % vs stable \(\d+\.\d ms vs \d+\.\d ms\), 99\.75 % bound \+\d+ %, "
        r"tolerance 10 %",
        verdict.reason,
    ), verdict.reason
    latency = next(m for m in verdict.metrics if m.decided)
    assert latency.bound > latency.tolerance and latency.new > latency.stable


def test_404_on_one_path_fails_and_the_same_404_on_both_sides_does_not(streams):
    verdict, _ = run(streams, intervals=2, new_404_path="/api/stats")
    assert verdict.outcome is Outcome.FAILED
    assert "4xx on /api/stats 100.0 %" in verdict.reason
    analysis = Analysis(JudgePolicy())
    for k in range(6):
        new, stable = streams.pair(5.0 * k, new_404_path="/api/stats")
        stable_404 = streams.side(5.0 * k, 1000, 1.0, 0.0, "/api/stats", 5.0)
        verdict = analysis.update(new, stable_404)
    assert verdict.outcome is Outcome.SUCCESSFUL, verdict.reason


def test_a_failed_source_is_an_error_with_its_message_and_adds_no_evidence(streams):
    analysis = Analysis(JudgePolicy())
    analysis.update(*streams.pair(0.0))
    broken = Observations.failure("probe: connection refused", start_s=5.0, end_s=10.0)
    verdict = analysis.update(streams.pair(5.0)[0], broken)
    assert verdict.outcome is Outcome.ERROR
    assert "connection refused" in verdict.reason
    assert verdict.stable_requests == 1000 and verdict.new_requests == 1000


def test_a_rejection_stands_once_made(streams):
    analysis = Analysis(JudgePolicy())
    assert analysis.update(*streams.pair(0.0, new_errors=0.2)).outcome is Outcome.FAILED
    assert analysis.update(*streams.pair(5.0)).outcome is Outcome.FAILED


# ---- the bake -----------------------------------------------------------------------------


def bake(streams, minutes=20, start_errors_at=None, slow_interval=None, error_share=0.02):
    policy = JudgePolicy(kind="bake", horizon_s=minutes * 60, window_s=120)
    analysis = Analysis(policy)
    verdict = None
    for k in range(minutes * 12):
        t = 5.0 * k
        errors = error_share if start_errors_at is not None and t >= start_errors_at else 0.0
        scale = 3.0 if slow_interval is not None and k == slow_interval else 1.0
        verdict = analysis.update(*streams.pair(t, n=400, new_errors=errors, new_scale=scale))
        if verdict.outcome is Outcome.FAILED:
            return verdict, t
    return verdict, None


def test_a_late_error_regression_in_a_bake_is_caught_within_one_and_a_half_windows(streams):
    verdict, at = bake(streams, start_errors_at=900.0)
    assert verdict.outcome is Outcome.FAILED and at is not None
    assert 900.0 <= at <= 900.0 + 180.0, at
    assert verdict.reason.startswith("window ")


def test_one_slow_interval_does_not_fail_a_good_bake_but_a_slow_release_does(streams):
    verdict, at = bake(streams, minutes=10, slow_interval=40)
    assert verdict.outcome is Outcome.SUCCESSFUL, verdict.reason
    policy = JudgePolicy(kind="bake", horizon_s=600)
    analysis = Analysis(policy)
    for k in range(40):
        verdict = analysis.update(*streams.pair(5.0 * k, n=400, new_scale=3.0))
    assert verdict.outcome is Outcome.FAILED


def test_a_bake_whose_source_went_quiet_ends_inconclusive(streams):
    analysis = Analysis(JudgePolicy(kind="bake", horizon_s=600))
    for k in range(60):
        n = 400 if k < 10 else 1
        verdict = analysis.update(*streams.pair(5.0 * k, n=n))
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "window" in verdict.reason and "min_samples" in verdict.reason


# ---- service metrics, rollback ------------------------------------------------------------


def with_metrics(pair, new: dict, stable: dict):
    from dataclasses import replace

    return replace(pair[0], metrics=new), replace(pair[1], metrics=stable)


def test_a_critical_service_metric_regression_fails_and_a_missing_baseline_is_noticed(streams):
    metric = ServiceMetric(name="db_connections", bad="higher", critical=True)
    analysis = Analysis(JudgePolicy(service_metrics=[metric]))
    for k in range(20):
        verdict = analysis.update(
            *with_metrics(
                streams.pair(5.0 * k),
                {"db_connections": 40.0 + k % 3},
                {"db_connections": 10.0 + k % 2},
            )
        )
    assert verdict.outcome is Outcome.FAILED
    assert "db_connections" in verdict.reason
    analysis = Analysis(JudgePolicy(service_metrics=[metric]))
    verdict = analysis.update(*with_metrics(streams.pair(0.0), {"db_connections": 40.0}, {}))
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert "no data on stable" in verdict.reason


def test_a_non_critical_metric_regression_is_reported_not_failed(streams):
    metric = ServiceMetric(name="cache_hit_rate", bad="lower", critical=False)
    analysis = Analysis(JudgePolicy(service_metrics=[metric]))
    for k in range(20):
        verdict = analysis.update(
            *with_metrics(streams.pair(5.0 * k), {"cache_hit_rate": 0.4}, {"cache_hit_rate": 0.9})
        )
    assert verdict.outcome is Outcome.SUCCESSFUL
    assert any("cache_hit_rate" in note for note in verdict.notes)


def reference():
    return ReferenceFigures(requests=2000, errors=2, quantiles_ms={0.5: 2.7, 0.95: 6.2})


def test_a_rollback_target_is_never_judged_against_the_release_being_left(streams):
    analysis = Analysis(JudgePolicy(kind="rollback", reference=reference()))
    with pytest.raises(ValueError, match="never against the release being left"):
        analysis.update(*streams.pair(0.0))


def test_a_rollback_target_is_judged_against_its_verified_figures(streams):
    good = Analysis(JudgePolicy(kind="rollback", reference=reference()))
    for k in range(4):
        verdict = good.update(streams.side(5.0 * k, 1000, 1.0, 0.0, None, 5.0))
    assert verdict.outcome is Outcome.SUCCESSFUL, verdict.reason
    # recorded at another time, under another load: only a gross slowdown (> 3x) fails it
    busier = Analysis(JudgePolicy(kind="rollback", reference=reference()))
    verdict = busier.update(streams.side(0.0, 1000, 2.0, 0.0, None, 5.0))
    assert verdict.outcome is Outcome.SUCCESSFUL, verdict.reason
    slow = Analysis(JudgePolicy(kind="rollback", reference=reference()))
    verdict = slow.update(streams.side(0.0, 1000, 5.0, 0.0, None, 5.0))
    assert verdict.outcome is Outcome.FAILED
    assert "at its verification" in verdict.reason
    broken = Analysis(JudgePolicy(kind="rollback", reference=reference()))
    verdict = broken.update(streams.side(0.0, 1000, 1.0, 0.05, None, 5.0))
    assert verdict.outcome is Outcome.FAILED and "error rate" in verdict.reason


# ---- observations ---------------------------------------------------------------------------


def test_observations_merge_arrays_and_counts():
    probe = Observations.from_requests([1.0, 2.0], [200, 503], ["/a", "/a"], start_s=0, end_s=5)
    router = Observations(requests=100, errors=3, latency_mean_ms=4.0, start_s=0, end_s=5)
    merged = probe.merge(router)
    assert merged.total_requests == 102 and merged.total_errors == 4
    assert merged.latency_mean_ms == pytest.approx(4.0)
    assert merged.path_counts()["/a"].requests == 2
    with pytest.raises(ValueError, match="one length"):
        Observations(latency_ms=np.ones(3), failed=np.ones(2, dtype=bool))


def test_after_a_cutover_a_few_ms_against_an_idle_stable_pass_and_a_slow_release_fails(streams):
    """Verification and the bake compare the loaded new release with a stable release idle at
    weight 0: a practical-significance slack absorbs the queueing (+2 ms at p50 here), which a
    canary step, where both sides take users' traffic, still fails; a release 20x slower fails
    everywhere."""
    from prefect_delivery.blocks.settings import VerificationSettings
    from prefect_delivery.tasks.analysis import judge_policy

    settings = VerificationSettings()
    after_cutover = judge_policy(settings, "verification")
    assert run(streams, after_cutover, new_scale=1.8)[0].outcome is Outcome.SUCCESSFUL
    assert run(streams, judge_policy(settings, "step"), new_scale=1.8)[0].outcome is (
        Outcome.FAILED
    )
    verdict, _ = run(streams, after_cutover, new_scale=20)
    assert verdict.outcome is Outcome.FAILED and "+ 10 ms" in verdict.reason, verdict.reason
