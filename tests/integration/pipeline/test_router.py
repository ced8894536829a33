"""HAProxyRouter against a real HAProxy and real hello-service processes."""

from __future__ import annotations

import os
import socket
from collections import Counter

import httpx
import pytest
from support import free_port, short_tmpdir

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.routing.haproxy import HAProxyRouter


def serve(tag: str, header: tuple[str, str] | None = None):
    """A tiny real HTTP server process answering its tag (and /healthz), with an extra
    response header when given."""
    import subprocess
    import sys

    port = free_port()
    code = (
        "import http.server,sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "  def do_GET(self):\n"
        f"    body=b'{tag}'\n"
        "    self.send_response(200); self.send_header('Content-Length',str(len(body)))\n"
        + (f"    self.send_header({header[0]!r},{header[1]!r})\n" if header else "")
        +
        "    self.end_headers(); self.wfile.write(body)\n"
        "  def log_message(self,*a): pass\n"
        f"http.server.ThreadingHTTPServer(('127.0.0.1',{port}),H).serve_forever()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
            break
        except httpx.HTTPError:
            import time

            time.sleep(0.05)
    return proc, f"127.0.0.1:{port}"


@pytest.fixture
def router():
    state = short_tmpdir()
    r = HAProxyRouter(name="rt", frontend_port=free_port(), state_dir=str(state))
    yield r
    r.stop()


def spread(url: str, n: int = 200) -> Counter:
    with httpx.Client(timeout=5) as client:
        return Counter(client.get(url).text for _ in range(n))


def test_weights_move_traffic_without_reload(router):
    a, addr_a = serve("A")
    b, addr_b = serve("B")
    try:
        router.ensure_started()
        pid = router.pid()
        router.attach(addr_a)
        router.attach(addr_b)
        router.wait_until_up(addr_a)
        router.wait_until_up(addr_b)
        router.set_weights({addr_a: 200, addr_b: 0})
        assert spread(router.frontend_url) == Counter({"A": 200})
        took = router.set_weights({addr_a: 100, addr_b: 100})
        counts = spread(router.frontend_url)
        assert 80 <= counts["A"] <= 120 and counts["A"] + counts["B"] == 200
        router.set_weights({addr_a: 0, addr_b: 200})
        assert spread(router.frontend_url) == Counter({"B": 200})
        assert router.weights() == {addr_a: 0, addr_b: 200}
        assert router.pid() == pid, "a weight change must not restart HAProxy"
        assert took < 1000
    finally:
        a.kill()
        b.kill()


def test_every_answer_names_the_slot_that_gave_it(router):
    """The app answers only its tag; the router adds which slot (so which instance) it was,
    replacing whatever an app says in that header itself."""
    a, addr_a = serve("A")
    b, addr_b = serve("B", header=(router.identity_header, "s0"))  # a forged identity
    try:
        router.ensure_started()
        slots = {router.attach(addr_a): "A", router.attach(addr_b): "B"}
        router.wait_until_up(addr_a)
        router.wait_until_up(addr_b)
        router.set_weights({addr_a: 100, addr_b: 100})
        with httpx.Client(timeout=5) as client:
            answers = [client.get(router.frontend_url) for _ in range(40)]
        named = Counter((slots.get(r.headers.get(router.identity_header)), r.text) for r in answers)
        assert set(named) == {("A", "A"), ("B", "B")}, named
    finally:
        a.kill()
        b.kill()


def test_detach_frees_the_slot(router):
    proc, addr = serve("A")
    try:
        router.ensure_started()
        slot = router.attach(addr)
        assert router.attach(addr) == slot  # idempotent
        router.detach(addr)
        assert addr not in router.weights()
        assert router.attach(addr) == slot  # the freed slot is reused
    finally:
        proc.kill()


def test_ensure_started_is_idempotent(router):
    router.ensure_started()
    pid = router.pid()
    router.ensure_started()
    assert router.pid() == pid and router.is_running()
    router.stop()
    assert not router.is_running()


def test_taken_port_is_a_clear_config_error():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        r = HAProxyRouter(name="taken", frontend_port=port, state_dir=str(short_tmpdir()))
        with pytest.raises(ConfigError) as info:
            r.ensure_started()
        message = str(info.value)
        assert f"127.0.0.1:{port}" in message and "frontend_port" in message
        assert not r.is_running()
    finally:
        holder.close()


def test_missing_haproxy_is_a_clear_config_error():
    r = HAProxyRouter(
        name="nohap",
        frontend_port=free_port(),
        state_dir=str(short_tmpdir()),
        haproxy_bin="haproxy-not-installed",
    )
    with pytest.raises(ConfigError, match="apt-get install haproxy"):
        r.ensure_started()


def test_non_loopback_frontend_is_refused():
    with pytest.raises(ValueError, match="loopback"):
        HAProxyRouter(name="x", frontend_host="0.0.0.0", frontend_port=8080)


def test_unknown_address_is_refused(router):
    from prefect_delivery.blocks.errors import InfrastructureError

    router.ensure_started()
    with pytest.raises(InfrastructureError, match="no backend slot"):
        router.set_weights({"127.0.0.1:1234": 10})
    assert os.path.exists(router.socket_path)
