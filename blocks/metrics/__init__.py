"""The metric-source seam: observations of one group of instances over one window.

A ``MetricSource`` measures a ``MetricScope`` (the instances of one release, their router slots
and the paths probes hit) for a window that starts now and returns ``Samples``. Sources:
synthetic probes (``ProbeSource``), the router's own per-slot counters (``RouterStatsSource``)
and ``PrometheusSource``. :func:`measure` asks every source of an environment at once, over the
same window, and folds their samples into one. Sources take a ``Router`` (the protocol), never a
concrete router, as Flagger's ``pkg/metrics/providers`` take a provider-neutral query.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, runtime_checkable

from prefect_delivery.blocks.metrics.samples import MetricScope, Samples, percentile
from prefect_delivery.blocks.routing import Router

__all__ = ["MetricScope", "MetricSource", "Samples", "measure", "percentile"]


@runtime_checkable
class MetricSource(Protocol):
    """Gives samples for a scope over a window that starts now; blocks for the window."""

    def measure(self, scope: MetricScope, window_s: float, router: Router) -> Samples: ...


def measure(
    sources: list[MetricSource],
    scope: MetricScope,
    window_s: float,
    router: Router,
    tolerate_errors: bool = False,
) -> Samples:
    """Every source over the same window, in parallel, folded into one sample.

    A source that did not answer makes the sample an Error, unless ``tolerate_errors`` and
    another source answered: then the sample holds the numbers that came and names the
    missing source in ``warnings``."""
    if not sources:
        return Samples(
            source="none",
            window_s=window_s,
            error="the environment has no metric source configured",
        )
    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        results = list(pool.map(lambda s: s.measure(scope, window_s, router), sources))
    answered = [r for r in results if not r.error]
    if tolerate_errors and answered and len(answered) < len(results):
        total = Samples.total(answered)
        missing = [r.error for r in results if r.error]
        return total.model_copy(update={"warnings": [*total.warnings, *missing]})
    return Samples.total(results)
