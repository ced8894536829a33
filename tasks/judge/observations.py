"""Observations: what one metric source saw of ONE group (new or stable) over one interval.

Per-request arrays (probes, access logs) and/or counts (router stats, Prometheus), plus named
service metrics with one value per interval. Time comes in with the observations (``start_s``,
``end_s`` on the caller's clock); the judge never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class PathCounts:
    """Requests and 4xx answers on one path, for sources that only count."""

    requests: int = 0
    client_errors: int = 0


def _array(values, dtype) -> np.ndarray:
    return np.asarray(values if values is not None else [], dtype=dtype).reshape(-1)


@dataclass(frozen=True)
class Observations:
    start_s: float = 0.0
    end_s: float = 0.0
    latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    failed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    status: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    path: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    requests: int = 0
    errors: int = 0
    paths: dict[str, PathCounts] = field(default_factory=dict)
    latency_mean_ms: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.latency_ms)
        for name in ("failed", "status", "path"):
            if len(getattr(self, name)) not in (0, n):
                raise ValueError(
                    f"Observations.{name} has {len(getattr(self, name))} entries but latency_ms "
                    f"has {n}: per-request arrays must be of one length"
                )
        if self.requests < 0 or self.errors < 0 or self.errors > self.requests:
            raise ValueError(
                f"Observations counts requests={self.requests} errors={self.errors}: need "
                "0 <= errors <= requests"
            )

    @classmethod
    def from_requests(
        cls,
        latency_ms,
        status,
        path=None,
        failed=None,
        *,
        start_s: float = 0.0,
        end_s: float = 0.0,
        source: str = "",
        **extra,
    ) -> Observations:
        """Per-request data; ``status`` 0 means no answer (connection failure, timeout).
        ``failed`` defaults to no answer or 5xx."""
        latency = _array(latency_ms, float)
        codes = _array(status, np.int32)
        flags = (codes == 0) | (codes >= 500) if failed is None else _array(failed, bool)
        paths = _array(path, object) if path is not None else np.full(len(latency), "", object)
        return cls(
            start_s=start_s,
            end_s=end_s,
            latency_ms=latency,
            failed=flags,
            status=codes,
            path=paths,
            source=source,
            **extra,
        )

    @classmethod
    def failure(cls, message: str, *, start_s: float = 0.0, end_s: float = 0.0, source: str = ""):
        """The source itself failed: no numbers, a message."""
        return cls(start_s=start_s, end_s=end_s, error=message, source=source)

    @property
    def total_requests(self) -> int:
        return len(self.latency_ms) + self.requests

    @property
    def total_errors(self) -> int:
        return int(self.failed.sum()) + self.errors

    def ok_latencies(self) -> np.ndarray:
        """Latencies of the requests that were answered without an error or a 4xx."""
        if not len(self.latency_ms):
            return self.latency_ms
        good = ~self.failed
        if len(self.status):
            good &= self.status < 400
        return self.latency_ms[good]

    def path_counts(self) -> dict[str, PathCounts]:
        """Requests and 4xx per path, from the arrays and from the counts."""
        out = dict(self.paths)
        if len(self.path) and len(self.status):
            names, inverse = np.unique(self.path.astype(str), return_inverse=True)
            total = np.bincount(inverse, minlength=len(names))
            client = np.bincount(
                inverse, weights=(self.status >= 400) & (self.status < 500), minlength=len(names)
            )
            for i, name in enumerate(names):
                seen = out.get(name, PathCounts())
                out[name] = PathCounts(
                    seen.requests + int(total[i]), seen.client_errors + int(client[i])
                )
        return out

    def merge(self, other: Observations) -> Observations:
        """Both sources' observations of the same group: arrays join, counts add up."""
        paths = dict(self.paths)
        for name, counts in other.paths.items():
            seen = paths.get(name, PathCounts())
            paths[name] = PathCounts(
                seen.requests + counts.requests, seen.client_errors + counts.client_errors
            )
        means = [
            (o.latency_mean_ms, max(1, o.total_requests))
            for o in (self, other)
            if o.latency_mean_ms is not None
        ]
        mean = sum(m * w for m, w in means) / sum(w for _, w in means) if means else None
        return Observations(
            start_s=min(self.start_s, other.start_s),
            end_s=max(self.end_s, other.end_s),
            latency_ms=np.concatenate([self.latency_ms, other.latency_ms]),
            failed=np.concatenate([self._flags(), other._flags()]),
            status=np.concatenate([self._codes(), other._codes()]),
            path=np.concatenate([self._paths(), other._paths()]),
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            paths=paths,
            latency_mean_ms=mean,
            metrics={**other.metrics, **self.metrics},
            error="; ".join(e for e in (self.error, other.error) if e) or None,
            source=" + ".join(s for s in dict.fromkeys((self.source, other.source)) if s),
        )

    def _flags(self) -> np.ndarray:
        n = len(self.latency_ms)
        return self.failed if len(self.failed) == n else np.zeros(n, dtype=bool)

    def _codes(self) -> np.ndarray:
        n = len(self.latency_ms)
        return self.status if len(self.status) == n else np.full(n, 200, dtype=np.int32)

    def _paths(self) -> np.ndarray:
        n = len(self.latency_ms)
        return self.path if len(self.path) == n else np.full(n, "", dtype=object)
