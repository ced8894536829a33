"""PrometheusSource against a real Prometheus scraping HAProxy's built-in exporter."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest
from support import SteadyLoad, free_port, short_tmpdir
from support.pipeline import build_release, register

from prefect_delivery.blocks.metrics.prometheus import PrometheusSource
from prefect_delivery.blocks.metrics.router_stats import RouterStatsSource
from prefect_delivery.flows.deploy import deploy
from prefect_delivery.tasks.analysis_run import scope_for

pytestmark = pytest.mark.skipif(
    not shutil.which("prometheus"),
    reason="prometheus is not installed (apt-get install prometheus)",
)


@pytest.fixture
def prometheus_for(tmp_path):
    procs = []

    def start(metrics_port: int) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: haproxy\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        )
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'db'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def test_prometheus_counts_what_haproxy_counts(make_env, prometheus_for):
    from prefect_delivery.flows.cli.demo import prepare_repo

    root = short_tmpdir("pd-prom-")
    release = build_release(prepare_repo(root), "1.0.0", store_root=str(root / "a"))
    env = make_env("prom")
    env = register(env, "hello-service", port=env.router.frontend_port, metrics_port=free_port())
    url = prometheus_for(env.router.metrics_port)
    deploy(env.name, release)
    scope = scope_for(env, "stable", env.target.list(env.name), release)
    source = PrometheusSource(url=url, settle_s=2.5)
    with SteadyLoad(env.url, path="/api/greeting", concurrency=2):
        time.sleep(3)  # a few scrapes before the window
        haproxy = RouterStatsSource().measure(scope, 5, env.router)
        prom = source.measure(scope, 5, env.router)
    assert prom.error is None, prom.error
    assert haproxy.requests > 100
    assert prom.requests > 100
    # both count the same traffic over (nearly) the same 5 s window: same order of magnitude
    assert 0.3 < prom.requests / haproxy.requests < 3, (prom, haproxy)
    assert prom.errors == 0 and prom.avg_ms is not None
