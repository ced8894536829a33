"""JudgePolicy: what an environment asks of a release, per kind of decision.

One engine, four policies:

- ``step``: a canary or rolling step. Evidence accumulates over the step (and its extensions:
  the tests are anytime-valid, so extending a step never inflates alpha). Failed as soon as a
  test rejects; Successful when nothing rejected and both sides have ``min_samples``.
- ``verification``: a bounded burst; the same tests as a step, judged on what the burst saw.
- ``bake``: sliding evidence over a long window: a fresh test in every window of ``window_s``
  seconds, a new window every ``window_s / 2``, each at alpha divided by the number of windows
  in ``horizon_s``; so a regression that starts late is judged on its own, within
  ``1.5 * window_s`` of its start, and one interval's latency evidence is capped
  (``interval_evidence_cap``) so one slow interval cannot fail a good hour.
- ``rollback``: the target alone against the absolute limits and its own figures recorded at
  its earlier verification (``reference``); never against the release being left.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Kind = Literal["step", "verification", "bake", "rollback"]

#: A rollback target has no same-time yardstick: it is judged against figures it recorded at
#: its own verification, maybe hours ago on a machine that was less busy (on 2 cores under
#: load a good release measured 7x its recorded p95). So latency catches only a gross
#: regression there (3x its recorded quantile plus ROLLBACK_LATENCY_SLACK_MS); errors, which
#: do not depend on the machine's load, are judged as strictly as anywhere.
ROLLBACK_LATENCY_TOLERANCE = 2.0
ROLLBACK_LATENCY_SLACK_MS = 50.0

#: After a cutover (verification, the bake) the stable release sits warm at weight 0 while the
#: new one serves every user: the same-time yardstick is idle, so its latency is biased low by
#: the queueing the new release's users cause (a good release measured p50 6.4 ms against an
#: idle stable's 3.6 ms in CI, 2 cores). A latency regression there must exceed the tolerance
#: and this many milliseconds; in canary and rolling steps both sides take users' traffic and
#: no slack is added. Errors are judged the same everywhere.
IDLE_BASELINE_LATENCY_SLACK_MS = 10.0


class ServiceMetric(BaseModel):
    """One of the service's own metrics (a Prometheus query per release group)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name the verdict reports, e.g. 'db_connections_in_use'.")
    query: str = Field(default="", description="PromQL with {group} for the release group.")
    bad: Literal["higher", "lower"] = Field(description="Which direction is a regression.")
    critical: bool = Field(
        default=False, description="A regression fails the analysis (else it is reported)."
    )
    tolerance: float = Field(default=0.10, ge=0, description="Allowed relative difference.")


class ReferenceFigures(BaseModel):
    """What a release measured at its own verification, kept to judge it as a rollback target."""

    model_config = ConfigDict(extra="forbid")

    requests: int = Field(ge=1)
    errors: int = Field(ge=0)
    quantiles_ms: dict[float, float] = Field(
        default_factory=dict, description="Latency quantile (0..1) -> milliseconds."
    )
    metrics: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _errors_within_requests(self) -> ReferenceFigures:
        if self.errors > self.requests:
            raise ValueError(f"reference errors {self.errors} > requests {self.requests}")
        return self


class JudgePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind = "step"
    alpha: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="False-rollback probability over the whole step, burst or bake.",
    )
    max_error_rate: float = Field(
        default=0.01, ge=0, lt=1, description="Absolute limit on the error rate (5xx, no answer)."
    )
    error_tolerance: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Allowed excess of the error rate (and of a path's 4xx rate) over stable's.",
    )
    latency_tolerance: float | None = Field(
        default=None,
        ge=0,
        description="Allowed relative latency increase at each quantile (default 0.10; 2.0 "
        "for rollback, judged against figures recorded at another time).",
    )
    latency_slack_ms: float = Field(default=0.0, ge=0, description="Absolute latency slack.")
    quantiles: list[float] = Field(default_factory=lambda: [0.5, 0.95])
    min_samples: int = Field(default=50, ge=1, description="Requests per side to pass.")
    window_s: float = Field(default=120.0, gt=0, description="Bake: length of a window.")
    horizon_s: float = Field(default=3600.0, gt=0, description="Bake: planned length.")
    interval_evidence_cap: float | None = Field(
        default=None,
        gt=1,
        description="Largest latency e-value one interval may contribute (default 3): one "
        "interval where the machine slowed one side cannot decide alone.",
    )
    service_metrics: list[ServiceMetric] = Field(default_factory=list)
    reference: ReferenceFigures | None = None

    @field_validator("quantiles")
    @classmethod
    def _quantiles_in_range(cls, values: list[float]) -> list[float]:
        for q in values:
            if not 0 < q < 1:
                raise ValueError(f"quantile {q} is outside (0, 1); e.g. 0.95 for p95")
        return sorted(set(values))

    @model_validator(mode="after")
    def _kind_defaults(self) -> JudgePolicy:
        if self.latency_tolerance is None:
            self.latency_tolerance = (
                ROLLBACK_LATENCY_TOLERANCE if self.kind == "rollback" else 0.10
            )
        if self.interval_evidence_cap is None:
            self.interval_evidence_cap = 3.0
        return self

    def intervals_to_decide(self) -> int:
        """The fewest intervals in which the latency test can reject at all: each interval adds
        at most ``interval_evidence_cap`` to the evidence, and a quantile rejects at
        1 / (alpha / 2 / len(quantiles)). A verification burst lasts at least this many
        intervals, or a release twenty times slower would pass a burst that ended after one."""
        if self.kind == "rollback":  # judged on all it saw against fixed figures: no cap
            return 1
        threshold = 2 * len(self.quantiles) / self.alpha
        return max(1, math.ceil(math.log(threshold) / math.log(self.interval_evidence_cap)))

    def windows(self) -> int:
        """How many bake windows the horizon holds (a window starts every window_s / 2)."""
        return max(1, -(-int(self.horizon_s * 1000) // int(self.window_s * 500)))
