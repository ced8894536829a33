"""The standard-library client that status and break-glass use: answers of any status, no
answer as None, many instances asked side by side."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from prefect_delivery.tasks.runtime.direct_http import ask, ask_all


@pytest.fixture
def server():
    both = threading.Barrier(2, timeout=3)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path == "/together":
                try:
                    both.wait()  # answers only when a second request is in at the same time
                    code = 200
                except threading.BrokenBarrierError:
                    code = 504
            else:
                code = {"/ok": 200, "/broken": 500}.get(self.path, 404)
            body = f'{{"path": "{self.path}"}}'.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_answer_of_any_status_is_an_answer_and_silence_is_none(server):
    ok, broken = ask(server + "/ok"), ask(server + "/broken")
    assert (ok.status, ok.body) == (200, b'{"path": "/ok"}')
    assert broken.status == 500 and b"/broken" in broken.body
    assert ask(f"http://127.0.0.1:{closed_port()}/ok", timeout=0.5) is None
    assert ask("not a url") is None


def test_many_instances_are_asked_side_by_side_in_order(server):
    # each /together answer waits for a second request in flight: one after the other, both
    # would time out at the barrier (504)
    answers = ask_all([server + "/together", server + "/together"], timeout=5)
    assert [a.status for a in answers] == [200, 200]
    urls = [server + "/ok", f"http://127.0.0.1:{closed_port()}/", server + "/broken"]
    assert [a and a.status for a in ask_all(urls, timeout=0.5)] == [200, None, 500]
