"""ProbeSource: synthetic requests (httpx) straight at the scope's instances, for a window.

Gives every step samples of its own, with latency percentiles, even when no user traffic
arrives (a quiet staging, a 5 % canary at night).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from prefect.blocks.core import Block
from pydantic import Field

from prefect_delivery.blocks.haproxy import HAProxyRouter
from prefect_delivery.blocks.metrics import MetricScope, Samples
from prefect_delivery.blocks.probe import probe


class ProbeSource(Block):
    """Synthetic probes against instances: request counts, errors, p50/p95/p99 latency."""

    _block_type_name = "Probe Source"
    _block_type_slug = "probe-source"
    _description = "Metric source: synthetic HTTP probes (httpx) against each instance."

    concurrency: int = Field(default=2, ge=1, le=32, description="Parallel probes per instance.")
    timeout_s: float = Field(default=5.0, gt=0, description="Per-request timeout.")

    def measure(self, scope: MetricScope, window_s: float, router: HAProxyRouter) -> Samples:
        if not scope.addresses:
            return Samples(source=f"probe {scope.label}", window_s=window_s)
        with ThreadPoolExecutor(max_workers=len(scope.addresses)) as pool:
            results = list(
                pool.map(
                    lambda address: probe(
                        f"http://{address}",
                        scope.paths,
                        duration_s=window_s,
                        concurrency=self.concurrency,
                        timeout_s=self.timeout_s,
                        source=f"probe {scope.label}",
                    ),
                    scope.addresses,
                )
            )
        total = results[0]
        for other in results[1:]:
            total = total.merged(other)
        return total
