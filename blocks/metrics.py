"""Metric samples: what a metric source measured for one scope over one window.

Sources (synthetic probes, HAProxy stats, Prometheus) all return ``Samples``; the analysis is a
pure function of samples, thresholds and a baseline (see tasks/analysis.py).
"""

from __future__ import annotations

import math
from typing import Protocol

from pydantic import BaseModel, Field


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of the values; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Samples(BaseModel):
    source: str = Field(description="Which source measured, and what (e.g. probe frontend).")
    requests: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    window_s: float = 0.0
    error: str | None = Field(default=None, description="Set when the source itself failed.")
    status_counts: dict[str, int] = Field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @classmethod
    def from_latencies(
        cls,
        source: str,
        latencies_ms: list[float],
        errors: int,
        window_s: float,
        status_counts: dict[str, int] | None = None,
    ) -> Samples:
        return cls(
            source=source,
            requests=len(latencies_ms),
            errors=errors,
            p50_ms=percentile(latencies_ms, 50),
            p95_ms=percentile(latencies_ms, 95),
            p99_ms=percentile(latencies_ms, 99),
            window_s=window_s,
            status_counts=status_counts or {},
        )

    def merged(self, other: Samples) -> Samples:
        """Counts add up; percentiles keep the worse of the two (a conservative merge)."""

        def worse(a: float | None, b: float | None) -> float | None:
            return b if a is None else a if b is None else max(a, b)

        counts = dict(self.status_counts)
        for key, value in other.status_counts.items():
            counts[key] = counts.get(key, 0) + value
        return Samples(
            source=self.source,
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            p50_ms=worse(self.p50_ms, other.p50_ms),
            p95_ms=worse(self.p95_ms, other.p95_ms),
            p99_ms=worse(self.p99_ms, other.p99_ms),
            window_s=self.window_s + other.window_s,
            error=self.error or other.error,
            status_counts=counts,
        )


class MetricSource(Protocol):
    """Gives samples for some instances (or the frontend) over a window."""

    def measure(self, urls: list[str], window_s: float) -> Samples: ...
