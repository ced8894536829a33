import pytest

from prefect_delivery.blocks.metrics.samples import Samples, percentile
from prefect_delivery.blocks.settings import VerificationSettings
from prefect_delivery.tasks.analysis import Outcome, analyze, latency_limit

SETTINGS = VerificationSettings(
    min_samples=50, max_error_rate=0.01, latency_tolerance=0.2, latency_slack_ms=10
)


def samples(requests=100, errors=0, p95=5.0, error=None):
    return Samples(source="t", requests=requests, errors=errors, p95_ms=p95, error=error)


def test_percentile_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 95) == 95
    assert percentile(values, 50) == 50
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 95) is None


def test_good_release_is_successful():
    verdict = analyze(samples(), SETTINGS, baseline=samples(p95=5.0))
    assert verdict.outcome is Outcome.SUCCESSFUL
    assert verdict.reasons == []


def test_error_rate_above_limit_fails_with_numbers():
    verdict = analyze(samples(errors=2), SETTINGS)
    assert verdict.outcome is Outcome.FAILED
    assert "2.00%" in verdict.reasons[0] and "(2/100)" in verdict.reasons[0]


def test_error_rate_at_limit_passes():
    assert analyze(samples(errors=1), SETTINGS).outcome is Outcome.SUCCESSFUL


def test_latency_within_baseline_plus_tolerance_and_slack_passes():
    # limit = 100 * 1.2 + 10 = 130
    assert latency_limit(samples(p95=100), SETTINGS) == pytest.approx(130)
    assert analyze(samples(p95=129), SETTINGS, samples(p95=100)).passed


def test_latency_above_limit_fails():
    verdict = analyze(samples(p95=131), SETTINGS, samples(p95=100))
    assert verdict.outcome is Outcome.FAILED
    assert "p95 131.0ms above 130.0ms" in verdict.reasons[0]


def test_no_baseline_means_no_latency_judgement():
    assert analyze(samples(p95=10_000), SETTINGS, None).passed


def test_too_few_samples_is_inconclusive():
    verdict = analyze(samples(requests=49, errors=49), SETTINGS)
    assert verdict.outcome is Outcome.INCONCLUSIVE


def test_source_error_is_error():
    verdict = analyze(samples(error="prometheus did not answer"), SETTINGS)
    assert verdict.outcome is Outcome.ERROR
    assert "prometheus" in verdict.reasons[0]


def test_merge_adds_counts_and_keeps_worse_percentile():
    merged = samples(requests=10, errors=1, p95=5).merged(samples(requests=5, errors=2, p95=9))
    assert (merged.requests, merged.errors, merged.p95_ms) == (15, 3, 9)
