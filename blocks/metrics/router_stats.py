"""RouterStatsSource: real traffic per instance, from the router's per-slot counters.

Reads the counters of the scope's slots at the start and the end of the window: requests are
the HTTP responses the instances gave plus the requests that got none (connection and response
errors), errors are 5xx plus those. The router knows only a mean response time, reported as
avg_ms. The block type keeps its first slug (``haproxy-stats-source``) so saved blocks load.
"""

from __future__ import annotations

import time

from prefect.blocks.core import Block

from prefect_delivery.blocks.errors import InfrastructureError
from prefect_delivery.blocks.metrics.samples import MetricScope, Samples
from prefect_delivery.blocks.routing import Router, SlotState
from prefect_delivery.blocks.schema_cache import SchemaOnce


def counters(slots: list[SlotState], addresses: list[str]) -> tuple[int, int]:
    chosen = [s for s in slots if s.in_use and s.address in addresses]
    requests = sum(s.responses_total + s.connection_errors for s in chosen)
    errors = sum(s.responses_5xx + s.connection_errors for s in chosen)
    return requests, errors


class RouterStatsSource(SchemaOnce, Block):
    """Per-instance request and 5xx counts of live traffic, read from the router."""

    _block_type_name = "Router Stats Source"
    _block_type_slug = "haproxy-stats-source"
    _description = "Metric source: per-instance request/5xx counters read from the router."

    def measure(self, scope: MetricScope, window_s: float, router: Router) -> Samples:
        source = f"router {scope.label}"
        try:
            before = counters(router.slots(), scope.addresses)
            time.sleep(window_s)
            slots = router.slots()
        except InfrastructureError as exc:
            return Samples(source=source, window_s=window_s, error=str(exc))
        after = counters(slots, scope.addresses)
        chosen = [s for s in slots if s.in_use and s.address in scope.addresses]
        avg = max((s.avg_response_ms for s in chosen), default=None)
        return Samples(
            source=source,
            requests=max(0, after[0] - before[0]),
            errors=max(0, after[1] - before[1]),
            avg_ms=float(avg) if avg is not None else None,
            window_s=window_s,
        )
