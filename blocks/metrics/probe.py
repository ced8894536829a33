"""Synthetic probes: real HTTP requests (httpx) against a frontend or an instance.

A request counts as an error when it fails to connect, times out, or answers 5xx. Latency is
wall time per request as the client sees it. ``ProbeSource`` is the metric source built on them:
it probes each instance of a scope directly, so every window gets samples of its own, with
latency percentiles, even when no user traffic arrives (a quiet staging, a 5 % canary at night).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle

import httpx
from prefect.blocks.core import Block
from pydantic import Field

from prefect_delivery.blocks import httpclient
from prefect_delivery.blocks.metrics.samples import MetricScope, Samples
from prefect_delivery.blocks.release import SmokeCheck
from prefect_delivery.blocks.schema_cache import SchemaOnce


def check_endpoint(client: httpx.Client, base_url: str, check: SmokeCheck) -> str | None:
    """None if the endpoint answers as the manifest says, else what was wrong."""
    url = base_url.rstrip("/") + check.path
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        return f"{check.path}: request failed ({type(exc).__name__}: {exc})"
    if response.status_code != check.status:
        return f"{check.path}: answered {response.status_code}, expected {check.status}"
    if check.json_keys:
        try:
            body = response.json()
        except ValueError:
            return f"{check.path}: answer is not JSON"
        if not isinstance(body, dict):
            return f"{check.path}: answer is not a JSON object"
        missing = [key for key in check.json_keys if key not in body]
        if missing:
            return f"{check.path}: JSON lacks keys {missing}"
    return None


def smoke(base_url: str, checks: list[SmokeCheck], timeout_s: float = 5.0) -> list[str]:
    """Run every critical-endpoint check once; returns the problems (empty means all good)."""
    with httpclient.client(timeout=timeout_s) as client:
        return [p for p in (check_endpoint(client, base_url, c) for c in checks) if p]


def probe(
    base_url: str,
    paths: list[str],
    *,
    requests: int | None = None,
    duration_s: float | None = None,
    concurrency: int = 4,
    timeout_s: float = 5.0,
    source: str = "probe",
    rate_per_s: float | None = None,
) -> Samples:
    """Send ``requests`` requests (or keep sending for ``duration_s``) cycling over ``paths``;
    with ``rate_per_s``, at most that many starts per second (the k-th request not before
    k / rate_per_s seconds), else as fast as the instance answers."""
    if not paths:
        paths = ["/"]
    if requests is None and duration_s is None:
        raise ValueError("probe needs requests or duration_s")
    lock = threading.Lock()
    latencies: list[float] = []
    codes: list[int] = []
    asked: list[str] = []
    statuses: Counter[str] = Counter()
    errors = 0
    sent = 0
    began = time.monotonic()
    deadline = began + duration_s if duration_s is not None else None
    path_cycle = cycle(paths)

    def next_path() -> tuple[str, float] | None:
        """The next path and when it may start (paced by ``rate_per_s``)."""
        nonlocal sent
        with lock:
            if requests is not None and sent >= requests:
                return None
            now = time.monotonic()
            due = max(now, began + sent / rate_per_s) if rate_per_s else now
            if deadline is not None and due >= deadline:
                return None
            sent += 1
            return next(path_cycle), due

    def worker() -> None:
        nonlocal errors
        with httpclient.client(base_url=base_url, timeout=timeout_s) as client:
            while (turn := next_path()) is not None:
                path, due = turn
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
                started = time.perf_counter()
                try:
                    status = client.get(path).status_code
                    label = str(status)
                    failed = status >= 500
                except httpx.HTTPError as exc:
                    status, label, failed = 0, type(exc).__name__, True
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                    codes.append(status)
                    asked.append(path.split("?", 1)[0])
                    statuses[label] += 1
                    errors += failed

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return Samples.from_latencies(
        source,
        latencies,
        errors,
        time.perf_counter() - started,
        dict(statuses),
        codes=codes,
        paths=asked,
    )


#: The default pace of ProbeSource, per instance. Unpaced, two probe workers kept about 750
#: requests per second per instance busy on 2 cores: the probes, not the release, were the
#: machine's load, on the very CPU whose latency they judged. See the README (Analysis) for how
#: the bench chose it.
RATE_PER_S = 200.0


class ProbeSource(SchemaOnce, Block):
    """Synthetic probes against instances: request counts, errors, p50/p95/p99 latency."""

    _block_type_name = "Probe Source"
    _block_type_slug = "probe-source"
    _description = "Metric source: synthetic HTTP probes (httpx) against each instance."

    concurrency: int = Field(default=2, ge=1, le=32, description="Parallel probes per instance.")
    timeout_s: float = Field(default=5.0, gt=0, description="Per-request timeout.")
    rate_per_s: float | None = Field(
        default=RATE_PER_S,
        gt=0,
        description="Most probe requests per second per instance (empty: as fast as it answers,"
        " a load test rather than a probe).",
    )

    def measure(self, scope: MetricScope, window_s: float, router: object = None) -> Samples:
        return probe_instances(
            scope.addresses,
            scope.paths,
            duration_s=window_s,
            concurrency=self.concurrency,
            timeout_s=self.timeout_s,
            source=f"probe {scope.label}",
            rate_per_s=self.rate_per_s,
        )


def probe_instances(
    addresses: list[str],
    paths: list[str],
    *,
    requests: int | None = None,
    duration_s: float | None = None,
    concurrency: int = 2,
    timeout_s: float = 5.0,
    source: str = "probe",
    rate_per_s: float | None = None,
) -> Samples:
    """Probe every instance at once (``requests`` and ``rate_per_s`` are per instance); one
    sample for them all."""
    if not addresses:
        return Samples(source=source, window_s=duration_s or 0.0)
    with ThreadPoolExecutor(max_workers=len(addresses)) as pool:
        results = list(
            pool.map(
                lambda address: probe(
                    f"http://{address}",
                    paths,
                    requests=requests,
                    duration_s=duration_s,
                    concurrency=concurrency,
                    timeout_s=timeout_s,
                    source=source,
                    rate_per_s=rate_per_s,
                ),
                addresses,
            )
        )
    return Samples.total(results)
