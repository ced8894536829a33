"""The pipeline's first judge, kept for bench/judge.py to compare with (not used by the
pipeline any more; tasks/judge is): a pure function from samples, thresholds and a baseline.

- Error: the metric source failed (no numbers to judge).
- Inconclusive: fewer requests than ``min_samples``.
- Failed: error rate above the limit, or p95 latency above baseline p95 * (1 + tolerance)
  + slack. The baseline is the stable release measured in the same window, so a slow machine
  slows both and does not fail a good release.
- Successful: otherwise.

Strategies map Failed to rollback and Inconclusive to extending the step.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel

from prefect_delivery.blocks.metrics.samples import Samples
from prefect_delivery.blocks.settings import VerificationSettings


class Outcome(StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class Verdict(BaseModel):
    outcome: Outcome
    reasons: list[str]
    requests: int
    errors: int
    error_rate: float
    max_error_rate: float
    p95_ms: float | None
    baseline_p95_ms: float | None
    p95_limit_ms: float | None
    source: str

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.SUCCESSFUL

    def line(self) -> str:
        p95 = f"{self.p95_ms:.1f}ms" if self.p95_ms is not None else "n/a"
        limit = f" (limit {self.p95_limit_ms:.1f}ms)" if self.p95_limit_ms is not None else ""
        text = (
            f"{self.outcome.value}: {self.requests} requests, error rate "
            f"{self.error_rate:.2%} (limit {self.max_error_rate:.2%}), p95 {p95}{limit}"
        )
        return text + (f" - {'; '.join(self.reasons)}" if self.reasons else "")


def latency_limit(baseline: Samples | None, settings: VerificationSettings) -> float | None:
    if baseline is None or baseline.p95_ms is None:
        return None
    return baseline.p95_ms * (1 + settings.latency_tolerance) + settings.latency_slack_ms


def analyze(
    samples: Samples, settings: VerificationSettings, baseline: Samples | None = None
) -> Verdict:
    limit = latency_limit(baseline, settings)
    common = dict(
        requests=samples.requests,
        errors=samples.errors,
        error_rate=samples.error_rate,
        max_error_rate=settings.max_error_rate,
        p95_ms=samples.p95_ms,
        baseline_p95_ms=baseline.p95_ms if baseline else None,
        p95_limit_ms=limit,
        source=samples.source,
    )
    if samples.error:
        return Verdict(outcome=Outcome.ERROR, reasons=[samples.error], **common)
    if samples.requests < settings.min_samples:
        return Verdict(
            outcome=Outcome.INCONCLUSIVE,
            reasons=[
                f"only {samples.requests} requests, fewer than min_samples {settings.min_samples}"
            ],
            **common,
        )
    reasons = []
    if samples.error_rate > settings.max_error_rate:
        reasons.append(
            f"error rate {samples.error_rate:.2%} above {settings.max_error_rate:.2%} "
            f"({samples.errors}/{samples.requests})"
        )
    if limit is not None and samples.p95_ms is not None and samples.p95_ms > limit:
        reasons.append(
            f"p95 {samples.p95_ms:.1f}ms above {limit:.1f}ms (baseline "
            f"{baseline.p95_ms:.1f}ms +{settings.latency_tolerance:.0%} "
            f"+{settings.latency_slack_ms:.0f}ms)"
        )
    outcome = Outcome.FAILED if reasons else Outcome.SUCCESSFUL
    return Verdict(outcome=outcome, reasons=reasons, **common)
