"""Helpers shared by the integration and end-to-end tests: real servers, real processes."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from prefect_delivery.blocks import httpclient

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


class session_dir:  # noqa: N801 - a namespace
    path: str = ""
    #: the folders ``short_tmpdir`` made in this process: removed with ``path`` when the
    #: session passes (tests/conftest.py)
    made: list[Path] = []


_names = itertools.count()


def unique_name(role: str) -> str:
    """An environment name no other test, and no other pytest-xdist worker, uses: the router,
    the containers' labels and the instance records are found by it."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return f"{role}-{worker * 1000 + next(_names)}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def short_tmpdir(prefix: str = "pd-") -> Path:
    """A short path under /tmp: unix sockets must stay under 108 characters. It goes with the
    session's folder when the session passes."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    session_dir.made.append(path)
    return path


class PrefectServer:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME."""

    def __init__(self, home: str, port: int | None = None, ui: bool = False):
        self.home = home
        self.port = port or free_port()
        self.ui = ui
        self.proc: subprocess.Popen | None = None
        self.log = Path(home) / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PREFECT_HOME=self.home,
            PREFECT_API_URL=self.api_url,
            PREFECT_UI_API_URL=self.api_url,
            PREFECT_SERVER_API_HOST="127.0.0.1",
            PREFECT_SERVER_API_PORT=str(self.port),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED="true" if self.ui else "false",
            DO_NOT_TRACK="1",
        )
        return env

    def start(self, timeout: float = 90) -> None:
        Path(self.home).mkdir(parents=True, exist_ok=True)
        log = open(self.log, "ab")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpclient.get(f"{self.api_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prefect server did not start in {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@dataclass
class LoadResult:
    requests: int = 0
    failed: int = 0
    statuses: Counter = field(default_factory=Counter)
    versions: Counter = field(default_factory=Counter)
    #: time.monotonic() of the first and the last failed request (None: none failed)
    first_failure_at: float | None = None
    last_failure_at: float | None = None

    @property
    def outage_s(self) -> float:
        """From the first failed request to the last one (0: none or one failed)."""
        if self.first_failure_at is None or self.last_failure_at is None:
            return 0.0
        return self.last_failure_at - self.first_failure_at


class SteadyLoad:
    """Users' requests against a URL from background threads, at a steady pace, until stopped;
    counts every failure.

    Paced (``rate_per_s`` starts per second over all threads: the k-th request starts no
    earlier than k / rate after the first), as users' traffic is: unpaced, two threads kept
    about 1,100 requests/s going and cost 1.4 cores of this 2-core machine (client, HAProxy and
    the instances), the suite's largest single cost, on the CPU whose latency the judge
    measures. At 50/s it costs about 0.08 of a core (1 ms of the client's CPU per request,
    httpx; 0.4 ms the instance's, 0.15 ms HAProxy's) and any gap in service longer than 20 ms
    is still seen. httpx, not the standard library's client: like a browser, it opens a new
    connection instead of failing on a kept-alive one the server has closed (HAProxy's old
    process after a reload), and never sends a request twice."""

    def __init__(
        self,
        url: str,
        path: str = "/version",
        concurrency: int = 2,
        max_requests: int = 200_000,
        rate_per_s: float = 50.0,
    ):
        self.url = url
        self.path = path
        self.concurrency = concurrency
        self.max_requests = max_requests
        self.rate_per_s = rate_per_s
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._began = 0.0
        self._sent = 0

    def _next_start(self) -> float | None:
        """When the next request may start (None: the load is over)."""
        with self._lock:
            if self._sent >= self.max_requests:
                return None
            due = self._began + self._sent / self.rate_per_s
            now = time.monotonic()
            if due < now - 0.1:  # behind after a slow answer: go on at the pace, no burst
                self._began += now - due
                due = now
            self._sent += 1
            return due

    def _worker(self) -> None:
        with httpclient.client(base_url=self.url, timeout=5) as client:
            while not self._stop.is_set():
                due = self._next_start()
                if due is None:
                    return
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                try:
                    response = client.get(self.path)
                    ok = response.status_code < 400
                    label = str(response.status_code)
                    version = response.json().get("version") if ok else None
                except (httpx.HTTPError, ValueError) as exc:
                    ok, label, version = False, type(exc).__name__, None
                with self._lock:
                    self.result.requests += 1
                    self.result.statuses[label] += 1
                    if version:
                        self.result.versions[version] += 1
                    if not ok:
                        self.result.failed += 1
                        now = time.monotonic()
                        if self.result.first_failure_at is None:
                            self.result.first_failure_at = now
                        self.result.last_failure_at = now

    def __enter__(self) -> SteadyLoad:
        self._began = time.monotonic()
        for _ in range(self.concurrency):
            thread = threading.Thread(target=self._worker, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def have(binary: str) -> bool:
    return shutil.which(binary) is not None
