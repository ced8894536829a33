"""Metric samples: what a metric source measured for one scope over one window.

Sources (synthetic probes, router stats, Prometheus) all return ``Samples``; the analysis is a
pure function of samples, thresholds and a baseline (see tasks/analysis.py). Samples of several
sources, instances or intervals fold into one with :meth:`Samples.total` (the one merge).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

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
    avg_ms: float | None = Field(
        default=None, description="Mean latency, when that is all a source knows (a router's)."
    )
    error: str | None = Field(default=None, description="Set when the source itself failed.")
    warnings: list[str] = Field(
        default_factory=list,
        description="Sources that did not answer while others did (their numbers are missing).",
    )
    status_counts: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(
        default_factory=dict, description="The service's own metrics (name -> value)."
    )
    # Per request, for the judge (probes know them; counting sources do not). Not kept in
    # records: an hour's bake would hold millions.
    latencies_ms: list[float] = Field(default_factory=list, exclude=True, repr=False)
    codes: list[int] = Field(default_factory=list, exclude=True, repr=False)  # 0: no answer
    paths: list[str] = Field(default_factory=list, exclude=True, repr=False)

    @classmethod
    def total(cls, batches: Iterable[Samples]) -> Samples | None:
        """All batches folded into one (None for none): counts add up, percentiles keep the
        worse (see :meth:`merged`)."""
        result: Samples | None = None
        for batch in batches:
            result = batch if result is None else result.merged(batch)
        return result

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
        codes: list[int] | None = None,
        paths: list[str] | None = None,
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
            latencies_ms=list(latencies_ms) if codes is not None else [],
            codes=list(codes or []),
            paths=list(paths or []),
        )

    def summary(self) -> Samples:
        """The same figures without the per-request lists (for cumulative records)."""
        return self.model_copy(update={"latencies_ms": [], "codes": [], "paths": []})

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
            warnings=list(dict.fromkeys([*self.warnings, *other.warnings])),
            status_counts=counts,
            metrics={**self.metrics, **other.metrics},
            latencies_ms=self.latencies_ms + other.latencies_ms,
            codes=self.codes + other.codes,
            paths=self.paths + other.paths,
        )


class MetricScope(BaseModel):
    """What to measure: some instances of one release (their addresses and router slots)."""

    label: str = Field(description="e.g. 'canary' or 'stable'")
    addresses: list[str] = Field(description="instance addresses, host:port")
    slots: dict[str, str] = Field(default_factory=dict, description="address -> router slot")
    paths: list[str] = Field(default_factory=list, description="endpoints synthetic probes hit")
    queries: dict[str, str] = Field(
        default_factory=dict,
        description="The service's own metrics: name -> PromQL template (for Prometheus).",
    )
