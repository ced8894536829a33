"""blocks.httpclient: every client shares one verifying TLS context, and ``get`` passes on the
request's own arguments (a loopback server stands for the service)."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from prefect_delivery.blocks import httpclient


def test_one_verifying_context_for_every_client(monkeypatch):
    context = httpclient.tls_context()
    assert context is httpclient.tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    made = []
    monkeypatch.setattr(httpclient.httpx, "Client", lambda **kw: made.append(kw) or kw)
    httpclient.client(timeout=1)
    httpclient.client(base_url="http://127.0.0.1:1", timeout=2)
    assert [kw["verify"] for kw in made] == [context, context]
    assert made[1]["base_url"] == "http://127.0.0.1:1" and made[1]["timeout"] == 2


def test_get_passes_params_headers_and_timeout():
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen["path"], seen["token"] = self.path, self.headers.get("X-Token")
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/q"
        answer = httpclient.get(url, params={"query": "up"}, headers={"X-Token": "t"}, timeout=5)
    finally:
        thread.join(5)
        server.server_close()
    assert answer.status_code == 204
    assert seen == {"path": "/q?query=up", "token": "t"}
