"""From an environment's settings and its metric sources' samples to the one judge.

The judging itself is ``tasks/judge`` (pure, anytime-valid). This module is the seam between
it and the pipeline: :func:`judge_policy` makes the judge's policy from an environment's
``VerificationSettings`` for one kind of decision, and :func:`observations` turns what the
metric sources measured over one interval (``Samples``: per-request probes, router counts,
Prometheus values) into the judge's ``Observations``.
"""

from __future__ import annotations

from prefect_delivery.blocks.metrics import Samples
from prefect_delivery.blocks.settings import VerificationSettings
from prefect_delivery.tasks.judge import (
    JudgePolicy,
    Observations,
    Outcome,
    ReferenceFigures,
    ServiceMetric,
    Verdict,
)
from prefect_delivery.tasks.judge.policy import (
    IDLE_BASELINE_LATENCY_SLACK_MS,
    ROLLBACK_LATENCY_SLACK_MS,
)

__all__ = ["Outcome", "Verdict", "judge_policy", "observations", "reference_figures"]


def judge_policy(
    settings: VerificationSettings,
    kind: str,
    horizon_s: float | None = None,
    reference: Samples | None = None,
) -> JudgePolicy:
    """The judge's policy for ``kind`` (step, verification, bake, rollback) from settings."""
    options = {
        "kind": kind,
        "alpha": settings.alpha,
        "max_error_rate": min(settings.max_error_rate, 0.999),
        "error_tolerance": settings.error_tolerance,
        "latency_slack_ms": settings.latency_slack_ms,
        "quantiles": settings.quantiles,
        "min_samples": settings.min_samples,
        "service_metrics": [
            ServiceMetric(
                name=m.name, query=m.query, bad=m.bad, critical=m.critical, tolerance=m.tolerance
            )
            for m in settings.service_metrics
        ],
    }
    if kind != "rollback":
        options["latency_tolerance"] = settings.latency_tolerance
    if kind in ("verification", "bake"):  # the stable release is idle at weight 0
        options["latency_slack_ms"] = max(
            settings.latency_slack_ms, IDLE_BASELINE_LATENCY_SLACK_MS
        )
    if kind == "bake":
        options["window_s"] = settings.bake_window_s
        options["horizon_s"] = max(horizon_s or settings.bake_window_s, settings.bake_window_s)
    if kind == "rollback":
        options["reference"] = reference_figures(reference)
        options["latency_slack_ms"] = max(settings.latency_slack_ms, ROLLBACK_LATENCY_SLACK_MS)
    return JudgePolicy(**options)


def reference_figures(samples: Samples | None) -> ReferenceFigures | None:
    """A release's recorded figures (its own verification) as the judge's reference."""
    if samples is None or samples.requests < 1:
        return None
    quantiles = {
        q: value
        for q, value in ((0.5, samples.p50_ms), (0.95, samples.p95_ms), (0.99, samples.p99_ms))
        if value is not None
    }
    return ReferenceFigures(
        requests=samples.requests,
        errors=min(samples.errors, samples.requests),
        quantiles_ms=quantiles,
        metrics=dict(samples.metrics),
    )


def observations(
    samples: Samples, start_s: float, end_s: float, router_latency: bool = True
) -> Observations:
    """One interval of one group: the probes' requests one by one, the counting sources'
    requests and errors as counts, their mean latency, the service's metrics.

    ``router_latency`` False leaves the counting sources' mean latency out: after a cutover
    (verification, the bake) the stable release sits at weight 0, so the router's mean would
    compare a release under the users' load with an idle one (a false regression)."""
    if samples.error:
        return Observations.failure(samples.error, start_s=start_s, end_s=end_s)
    per_request = len(samples.codes)
    failed = sum(1 for c in samples.codes if c == 0 or c >= 500)
    counted = max(0, samples.requests - per_request)
    counted_errors = min(counted, max(0, samples.errors - failed))
    return Observations.from_requests(
        samples.latencies_ms,
        samples.codes,
        samples.paths if len(samples.paths) == per_request else None,
        start_s=start_s,
        end_s=end_s,
        source=samples.source,
        requests=counted,
        errors=counted_errors,
        latency_mean_ms=samples.avg_ms if router_latency else None,
        metrics=dict(samples.metrics),
    )
