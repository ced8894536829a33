"""Metric samples: what a metric source measured for one scope over one window.

Sources (synthetic probes, HAProxy stats, Prometheus) all return ``Samples``; the analysis is a
pure function of samples, thresholds and a baseline (see tasks/analysis.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from prefect_delivery.blocks.haproxy import HAProxyRouter


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
    avg_ms: float | None = Field(
        default=None, description="Mean latency, when that is all a source knows (HAProxy's rtime)."
    )
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
            source=self.source
            if self.source == other.source
            else f"{self.source} + {other.source}",
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            p50_ms=worse(self.p50_ms, other.p50_ms),
            p95_ms=worse(self.p95_ms, other.p95_ms),
            p99_ms=worse(self.p99_ms, other.p99_ms),
            avg_ms=worse(self.avg_ms, other.avg_ms),
            window_s=max(self.window_s, other.window_s),
            error=self.error or other.error,
            status_counts=counts,
        )


class MetricScope(BaseModel):
    """What to measure: some instances of one release (their addresses and router slots)."""

    label: str = Field(description="e.g. 'canary' or 'stable'")
    addresses: list[str] = Field(description="instance addresses, host:port")
    servers: dict[str, str] = Field(default_factory=dict, description="address -> router slot")
    paths: list[str] = Field(default_factory=list, description="endpoints synthetic probes hit")


class MetricSource(Protocol):
    """Gives samples for a scope over a window that starts now; blocks for the window."""

    def measure(self, scope: MetricScope, window_s: float, router: HAProxyRouter) -> Samples: ...
