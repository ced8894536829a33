"""The real server (uvicorn) started as a process, the way the pipeline starts a release."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(fault: str = "none") -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, HELLO_FAULT=fault)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hello_service", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return proc, port


def wait_ready(port: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server never answered")


def test_server_serves_health():
    proc, port = start()
    try:
        assert wait_ready(port) == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_sigterm_lets_the_request_in_flight_finish():
    import threading

    proc, port = start("slow:0.8")
    result = {}
    try:
        wait_ready(port)

        def call():
            url = f"http://127.0.0.1:{port}/api/greeting?name=drain"
            with urllib.request.urlopen(url, timeout=10) as response:
                result["status"] = response.status

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.3)  # the request is in flight now
        proc.terminate()
        caller.join(10)
    finally:
        proc.terminate()
        code = proc.wait(10)
    assert result.get("status") == 200
    assert code in (0, -15)  # uvicorn re-raises SIGTERM after a graceful shutdown


def test_crash_fault_exits_at_start():
    proc, _ = start("crash")
    assert proc.wait(15) == 3


def test_bad_fault_spec_exits_with_usage_error():
    proc, _ = start("explode")
    assert proc.wait(15) == 2
    assert b"explode" in proc.stdout.read()


@pytest.mark.parametrize("fault,status", [("unhealthy", 503), ("none", 200)])
def test_health_status_over_http(fault, status):
    proc, port = start(fault)
    try:
        assert wait_ready(port) == status
    finally:
        proc.terminate()
        proc.wait(10)
