"""Verdict: the outcome, every metric's numbers and bounds, and one readable reason."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class Outcome(StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class MetricResult(BaseModel):
    name: str = Field(description="e.g. 'error rate', 'error rate vs stable', 'p95 latency'.")
    new: float | None = Field(description="The new release's value (a rate, ms, a metric).")
    stable: float | None = Field(description="The comparison value: stable, limit or reference.")
    bound: float | None = Field(
        default=None, description="The confidence bound that decides (see bound_kind)."
    )
    bound_kind: str = ""
    confidence: float = Field(description="1 - the alpha this test was given.")
    tolerance: float | None = None
    decided: bool = Field(default=False, description="The test rejected: a regression.")
    critical: bool = True
    reason: str = ""


class Verdict(BaseModel):
    outcome: Outcome
    reason: str = Field(description="One readable line with the numbers that decided.")
    kind: str
    metrics: list[MetricResult] = Field(default_factory=list)
    new_requests: int = 0
    new_errors: int = 0
    stable_requests: int = 0
    stable_errors: int = 0
    intervals: int = 0
    elapsed_s: float = 0.0
    source: str = ""
    notes: list[str] = Field(default_factory=list, description="Non-critical regressions.")

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.SUCCESSFUL

    @property
    def new_error_rate(self) -> float:
        return self.new_errors / self.new_requests if self.new_requests else 0.0

    @property
    def stable_error_rate(self) -> float:
        return self.stable_errors / self.stable_requests if self.stable_requests else 0.0

    def line(self) -> str:
        return (
            f"{self.outcome.value}: new {self.new_requests} requests "
            f"{self.new_error_rate:.2%} errors, stable {self.stable_requests} requests "
            f"{self.stable_error_rate:.2%} errors - {self.reason}"
        )


def pct(value: float, digits: int = 1) -> str:
    """0.041 -> '4.1 %' (the README's and the reason lines' style)."""
    return f"{value * 100:.{digits}f} %"


def signed_pct(value: float) -> str:
    return f"{value * 100:+.0f} %"


def level(confidence: float) -> str:
    """0.9975 -> '99.75 %': the confidence a test was given, without trailing zeros."""
    text = f"{confidence * 100:.3f}".rstrip("0").rstrip(".")
    return f"{text} %"
