"""Settings an Environment carries: how to verify a release and how to roll it out.

Plain pydantic models nested inside the Environment block; every rule is checked here, before
anything live changes, and each error says which field, which value and what is allowed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STRATEGIES = ("blue-green", "canary", "rolling")
IN_PLACE = ("recreate", "restart", "in-place", "inplace")


class ServiceMetricSettings(BaseModel):
    """One of the service's own metrics, judged against the stable release ("database
    connections healthy", "cache hit rates normal", "background jobs processing")."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="What the verdict calls it, e.g. 'db_pool_waits'.")
    query: str = Field(
        description="PromQL for one release group: {servers} is a regex of its router slots, "
        "{addresses} of its instance addresses, {window} the interval in seconds."
    )
    bad: Literal["higher", "lower"] = Field(description="Which direction is a regression.")
    critical: bool = Field(default=True, description="A regression fails the analysis.")
    tolerance: float = Field(default=0.10, ge=0, description="Allowed relative difference.")


class VerificationSettings(BaseModel):
    """How a release is judged: the thresholds of the one judge (tasks/judge) every analysis
    uses, and the size of a verification. The defaults hold on a loaded 2-core machine
    (bench/judge.py measures them: no false rollback in 200 A/A comparisons)."""

    model_config = ConfigDict(extra="forbid")

    requests: int = Field(default=200, ge=1, description="Probe requests per verification.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Parallel probe requests.")
    timeout_s: float = Field(default=5.0, gt=0, description="Per-request timeout.")
    alpha: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="The false-rollback probability an analysis may have (over a whole step, "
        "verification or bake, however often it looks).",
    )
    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Absolute limit on the error rate (5xx, no answer)."
    )
    error_tolerance: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Allowed excess of the error rate (and of a path's 4xx rate) over stable's.",
    )
    latency_tolerance: float = Field(
        default=0.10,
        ge=0,
        description="Allowed relative latency increase over stable at each quantile.",
    )
    latency_slack_ms: float = Field(
        default=0.0, ge=0, description="Absolute latency slack on top of the tolerance."
    )
    quantiles: list[float] = Field(
        default_factory=lambda: [0.5, 0.95], description="Latency quantiles judged (0..1)."
    )
    min_samples: int = Field(
        default=50, description="Requests each side needs before a release can pass."
    )
    bake_window_s: float = Field(
        default=120.0,
        gt=0,
        description="The bake judges sliding windows this long (a new one every half): a "
        "regression that starts late is caught within 1.5 windows of its start.",
    )
    service_metrics: list[ServiceMetricSettings] = Field(
        default_factory=list,
        description="The service's own Prometheus metrics, judged against the stable release "
        "(needs the environment's PrometheusSource).",
    )

    @field_validator("min_samples")
    @classmethod
    def _some_evidence(cls, value: int) -> int:
        if value < 1:
            raise ValueError(
                f"min_samples {value} would let a release pass on no evidence at all; use at "
                "least 1 (default 50)"
            )
        return value

    @field_validator("quantiles")
    @classmethod
    def _quantiles(cls, values: list[float]) -> list[float]:
        for q in values:
            if not 0 < q < 1:
                raise ValueError(f"quantile {q} is outside (0, 1); e.g. 0.95 for p95")
        return values


class StrategySettings(BaseModel):
    """Which rollout strategy an environment uses, and its knobs."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["blue-green", "canary", "rolling"] = Field(
        default="blue-green", description="blue-green, canary or rolling."
    )
    instances: int = Field(default=1, ge=1, le=16, description="Instances of a release.")
    canary_steps: list[int] = Field(
        default_factory=lambda: [5, 50, 100],
        description="Traffic percentages of a canary, increasing, ending at 100.",
    )
    step_pause_s: float = Field(
        default=900.0, gt=0, description="Analysis window of each canary step."
    )
    analysis_interval_s: float = Field(
        default=5.0, gt=0, description="How often a running analysis looks at its metrics."
    )
    max_extensions: int = Field(
        default=2, ge=0, description="Times an Inconclusive step is extended before it fails."
    )
    keep_previous_s: float = Field(
        default=3600.0, ge=0, description="How long the previous release stays warm."
    )

    @field_validator("kind", mode="before")
    @classmethod
    def _known_strategy(cls, value: object) -> object:
        if isinstance(value, str) and value.lower() in IN_PLACE:
            raise ValueError(
                f"strategy {value!r} restarts the live release in place, which drops requests "
                "and leaves nothing to roll back to; use one of: " + ", ".join(STRATEGIES)
            )
        if isinstance(value, str) and value not in STRATEGIES:
            raise ValueError(f"unknown strategy {value!r}; use one of: " + ", ".join(STRATEGIES))
        return value

    @field_validator("canary_steps")
    @classmethod
    def _steps_increase_to_100(cls, steps: list[int]) -> list[int]:
        if not steps:
            raise ValueError("canary_steps is empty; give increasing percentages ending at 100")
        for step in steps:
            if not 0 < step <= 100:
                raise ValueError(f"canary step {step} is outside 1..100")
        for before, after in zip(steps, steps[1:], strict=False):
            if after <= before:
                raise ValueError(
                    f"canary_steps {steps} are not increasing ({before} then {after}); "
                    "each step must send more traffic than the one before"
                )
        if steps[-1] != 100:
            raise ValueError(f"canary_steps {steps} must end at 100")
        return steps

    @model_validator(mode="after")
    def _rolling_needs_instances(self) -> StrategySettings:
        if self.kind == "rolling" and self.instances < 2:
            raise ValueError(
                "a rolling deployment replaces instances one at a time and needs instances >= 2 "
                f"(got {self.instances}); use blue-green for a single instance"
            )
        return self


class PromotionPolicy(BaseModel):
    """Who and what may send a release into an environment. It lives in the Environment block,
    editable only where blocks are (the UI's Blocks page, Python, `delivery setup`): a run's
    parameters and the CLI's flags choose what to deliver and where, never weaken this."""

    model_config = ConfigDict(extra="forbid")

    upstream: str | None = Field(
        default=None,
        description="The environment that must have verified a digest before it may come here "
        "(production: staging). None: a first environment, reachable from a build.",
    )
    requires_approval: bool = Field(
        default=False, description="A person must approve each release before it comes here."
    )
    approvers: list[str] = Field(
        default_factory=list,
        description="Who may approve (names or handles, compared without case). Empty: anyone "
        "with access to the Prefect UI or `delivery approve`.",
    )
    allow_self_approval: bool = Field(
        default=False,
        description="May the author of the commit approve their own release? (Default: no.)",
    )
    allow_auto_approval: bool = Field(
        default=False,
        description="May a run's auto_approve satisfy the approval here? (Default: no; a demo "
        "or a trusted pipeline turns it on for a named environment.)",
    )

    @field_validator("approvers")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        names = [v.strip() for v in value]
        if any(not n for n in names):
            raise ValueError("approvers: an empty name; list names or handles, e.g. ['alice']")
        return names

    def may_approve(self, approver: str) -> bool:
        return not self.approvers or approver.strip().lower() in {a.lower() for a in self.approvers}

    def describe(self) -> str:
        parts = [f"upstream {self.upstream}" if self.upstream else "no upstream"]
        if self.requires_approval:
            who = ", ".join(self.approvers) if self.approvers else "anyone"
            parts.append(f"approval by {who}")
            parts.append("self-approval " + ("allowed" if self.allow_self_approval else "refused"))
            parts.append("auto-approval " + ("allowed" if self.allow_auto_approval else "refused"))
        else:
            parts.append("no approval")
        return "; ".join(parts)
