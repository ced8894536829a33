"""Probes against a real HTTP server on loopback: paced by ``rate_per_s``, or as fast as it
answers when unpaced."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prefect_delivery.blocks.metrics.probe import RATE_PER_S, ProbeSource, probe
from prefect_delivery.blocks.metrics.samples import MetricScope


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    starts: list[float] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).starts.append(time.monotonic())
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.starts = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}", _Handler.starts
    httpd.shutdown()
    httpd.server_close()


def test_a_paced_probe_sends_at_most_its_rate(server):
    address, starts = server
    before = time.monotonic()
    samples = probe(f"http://{address}", ["/"], duration_s=1.0, concurrency=2, rate_per_s=40)
    # the k-th request starts no earlier than k / 40 s after the probe began: at most 40 in
    # one second, spread over it rather than in a burst
    assert 5 <= samples.requests <= 40, samples.requests
    assert len(starts) == samples.requests and samples.errors == 0
    early = [k for k, t in enumerate(sorted(starts)) if t < before + k / 40]
    assert not early, early


def test_an_unpaced_probe_is_a_load_test(server):
    address, _ = server
    paced = probe(f"http://{address}", ["/"], duration_s=0.5, concurrency=2, rate_per_s=4)
    unpaced = probe(f"http://{address}", ["/"], duration_s=0.5, concurrency=2)
    assert 1 <= paced.requests <= 2, paced.requests
    assert unpaced.requests >= 10, unpaced.requests  # two workers, one request after another


def test_probe_source_paces_by_default(server):
    address, _ = server
    source = ProbeSource()
    assert source.rate_per_s == RATE_PER_S
    scope = MetricScope(label="new", addresses=[address], paths=["/"])
    samples = source.measure(scope, 0.5)
    assert 0 < samples.requests <= RATE_PER_S * 0.5, samples.requests
