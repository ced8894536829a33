"""PrometheusSource: request, error and latency figures from a Prometheus, by instant query.

Queries are templates: ``{servers}`` becomes a regex of the scope's router slots (e.g.
``s0|s3``), ``{addresses}`` a regex of instance addresses, ``{window}`` the window in seconds,
``{backend}`` what the router's metrics call the service's backend.
The default queries name the metrics of the router's own Prometheus exporter (router
``metrics_port``), so a Prometheus that scrapes the router works with no further configuration.
A Prometheus that does not answer gives an Error sample: the analysis retries, then fails safe.
"""

from __future__ import annotations

import re
import time

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, field_validator

from prefect_delivery.blocks import httpclient
from prefect_delivery.blocks.metrics.samples import MetricScope, Samples
from prefect_delivery.blocks.routing import EXPORTER_QUERIES, Router
from prefect_delivery.blocks.schema_cache import SchemaOnce
from prefect_delivery.blocks.secrets import mask, reveal

#: The default queries read the metrics the router's own Prometheus exporter publishes.
DEFAULT_REQUESTS, DEFAULT_ERRORS, DEFAULT_LATENCY_MS = EXPORTER_QUERIES


class PrometheusSource(SchemaOnce, Block):
    """Metric source backed by a Prometheus HTTP API (instant queries)."""

    _block_type_name = "Prometheus Source"
    _block_type_slug = "prometheus-source"
    _description = "Metric source: request/error/latency figures from Prometheus instant queries."

    url: str = Field(description="Prometheus base URL, e.g. http://127.0.0.1:9090")
    requests_query: str = Field(default=DEFAULT_REQUESTS)
    errors_query: str = Field(default=DEFAULT_ERRORS)
    latency_ms_query: str | None = Field(
        default=DEFAULT_LATENCY_MS, description="Latency in ms (mean unless you give a p95)."
    )
    latency_is_p95: bool = Field(
        default=False, description="True if latency_ms_query returns a 95th percentile."
    )
    bearer_token: SecretStr | None = Field(
        default=None, description="Sent as 'Authorization: Bearer ...' when set."
    )
    timeout_s: float = Field(default=3.0, gt=0)
    settle_s: float = Field(
        default=1.5, ge=0, description="Wait after the window for the last scrape to land."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError(f"url {value!r} must start with http:// or https://")
        return value.rstrip("/")

    def query(self, promql: str) -> float | None:
        headers = {}
        if self.bearer_token is not None:
            headers["Authorization"] = f"Bearer {reveal(self.bearer_token)}"
        response = httpclient.get(
            f"{self.url}/api/v1/query",
            params={"query": promql},
            headers=headers,
            timeout=self.timeout_s,
        )
        response.raise_for_status()
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"Prometheus said {body.get('error') or body}")
        result = body["data"]["result"]
        if not result:
            return None
        return float(result[0]["value"][1])

    def measure(self, scope: MetricScope, window_s: float, router: Router) -> Samples:
        source = f"prometheus {scope.label}"
        time.sleep(window_s + self.settle_s)
        values = {
            "servers": "|".join(re.escape(s) for s in scope.slots.values()) or "^$",
            "addresses": "|".join(re.escape(a) for a in scope.addresses) or "^$",
            "window": max(1, round(window_s)),
            "backend": router.route_name,
        }
        try:
            requests = self.query(self.requests_query.format(**values)) or 0.0
            errors = self.query(self.errors_query.format(**values)) or 0.0
            latency = (
                self.query(self.latency_ms_query.format(**values))
                if self.latency_ms_query
                else None
            )
            metrics = {}
            for name, template in scope.queries.items():
                value = self.query(template.format(**values))
                if value is not None:
                    metrics[name] = value
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            return Samples(
                source=source,
                window_s=window_s,
                error=f"Prometheus at {self.url} did not answer the query "
                f"({type(exc).__name__}: {mask(str(exc))[:160]})",
            )
        return Samples(
            source=source,
            requests=round(requests),
            errors=round(errors),
            p95_ms=latency if self.latency_is_p95 else None,
            avg_ms=None if self.latency_is_p95 else latency,
            window_s=window_s,
            metrics=metrics,
        )
