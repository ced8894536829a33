"""HAProxyStatsSource: real traffic per instance, from HAProxy's ``show stat`` counters.

Reads the counters of the scope's servers at the start and the end of the window: requests are
the HTTP responses the servers gave plus the requests that got none (connection and response
errors), errors are 5xx plus those. HAProxy knows only a mean response time, reported as avg_ms.
"""

from __future__ import annotations

import time

from prefect.blocks.core import Block

from prefect_delivery.blocks.errors import InfrastructureError
from prefect_delivery.blocks.haproxy import HAProxyRouter
from prefect_delivery.blocks.haproxy_runtime import ServerState
from prefect_delivery.blocks.metrics import MetricScope, Samples


def counters(servers: list[ServerState], addresses: list[str]) -> tuple[int, int]:
    chosen = [s for s in servers if s.in_use and s.address in addresses]
    requests = sum(s.responses_total + s.connection_errors for s in chosen)
    errors = sum(s.responses_5xx + s.connection_errors for s in chosen)
    return requests, errors


class HAProxyStatsSource(Block):
    """Per-instance request and 5xx counts of live traffic, read from the router."""

    _block_type_name = "HAProxy Stats Source"
    _block_type_slug = "haproxy-stats-source"
    _description = "Metric source: per-server request/5xx counters from HAProxy's runtime API."

    def measure(self, scope: MetricScope, window_s: float, router: HAProxyRouter) -> Samples:
        source = f"haproxy {scope.label}"
        try:
            before = counters(router.servers(), scope.addresses)
            time.sleep(window_s)
            servers = router.servers()
        except InfrastructureError as exc:
            return Samples(source=source, window_s=window_s, error=str(exc))
        after = counters(servers, scope.addresses)
        chosen = [s for s in servers if s.in_use and s.address in scope.addresses]
        avg = max((s.avg_response_ms for s in chosen), default=None)
        return Samples(
            source=source,
            requests=max(0, after[0] - before[0]),
            errors=max(0, after[1] - before[1]),
            avg_ms=float(avg) if avg is not None else None,
            window_s=window_s,
        )
