"""The server path as a user runs it: a Prefect server with the UI, deployments, a worker.

``ServerStack`` starts and tears down everything the end-to-end tests in tests/e2e/server use:
``prefect server start`` on a free loopback port (its own PREFECT_HOME), ``delivery
server-setup``, ``delivery setup`` (environments on free ports, a short bake window),
``delivery service add`` (hello-service's route), ``prefect --no-prompt deploy --all`` and
``prefect worker start``. Every command is the one a
user types, run as a subprocess with the stack's environment; the test process itself only
reads the API (through ``client()``), so it never changes the rest of the suite's settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from prefect_delivery.blocks import httpclient
from support import ROOT, VENV_BIN, PrefectServer, free_port

POOL = "delivery-process"
UUID_LINE = re.compile(r"UUID:\s*([0-9a-f-]{36})")


def _kill_group(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def processes_with_env(name: str, value: str, cmdline: str = "") -> list[int]:
    """Pids of live processes whose environment has name=value (e.g. a flow run id) and
    whose command line contains ``cmdline``."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and (
                cmdline.encode() in (entry / "cmdline").read_bytes()
            ):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if stat != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


@dataclass
class DeploymentRun:
    """``prefect deployment run ... --watch`` running in the background, as CI runs it."""

    proc: subprocess.Popen
    log: Path
    flow_run_id: str = ""

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            raise AssertionError(
                f"--watch still running after {timeout}s:\n{self.output()[-3000:]}"
            ) from None


@dataclass
class ServerStack:
    home: Path
    project_dir: Path = ROOT
    server: PrefectServer | None = None
    worker: subprocess.Popen | None = None
    listener: subprocess.Popen | None = None
    staging_port: int = field(default_factory=free_port)
    production_port: int = field(default_factory=free_port)
    runs: list[DeploymentRun] = field(default_factory=list)

    # ------------------------------------------------------------------ environment
    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def api_url(self) -> str:
        assert self.server is not None
        return self.server.api_url

    def env(self) -> dict[str, str]:
        assert self.server is not None
        env = self.server.env()
        env.update(
            DELIVERY_STATE_DIR=str(self.state_dir),
            DELIVERY_PROJECT_DIR=str(self.project_dir),
            PREFECT_WORKER_QUERY_SECONDS="2",
            PREFECT_WORKER_PREFETCH_SECONDS="5",
            PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            NO_COLOR="1",
            COLUMNS="200",
        )
        return env

    def run(self, *argv: str, timeout: float = 300, check: bool = True, **kw):
        proc = subprocess.run(
            list(argv),
            env=self.env(),
            cwd=kw.pop("cwd", self.project_dir),
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                f"{proc.stderr[-3000:]}"
            )
        return proc

    def delivery(self, *args: str, **kw):
        return self.run(str(VENV_BIN / "delivery"), *args, **kw)

    def prefect(self, *args: str, **kw):
        return self.run(str(VENV_BIN / "prefect"), *args, **kw)

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A sync Prefect client on this stack's API (settings scoped to the block)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.api_url}):
            with get_client(sync_client=True) as client:
                yield client

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.server = PrefectServer(home=str(self.home / "prefect"), ui=True)
        self.server.start()
        self.delivery("server-setup")
        self.delivery(
            "setup",
            "--state-dir",
            str(self.state_dir),
            "--staging-port",
            str(self.staging_port),
            "--production-port",
            str(self.production_port),
            "--bake-s",
            "1",
            # short timings, explicitly (setup's defaults are an hour's bake, 15-min steps)
            "--instances",
            "1",
            "--step-pause-s",
            "2",
            "--analysis-interval-s",
            "1",
        )
        # hello-service's route in each environment: the first ports, staging's and
        # production's (the deployments deliver copies of it, which carry its name)
        self.delivery("service", "add", str(ROOT / "examples" / "hello-service"))
        self.prefect("--no-prompt", "deploy", "--all", timeout=300)
        self.start_worker()
        self.start_listener()

    def start_listener(self) -> None:
        """`delivery monitor-listen` beside the worker, as the README's server path runs it."""
        log = open(self.home / "listener.log", "ab")  # noqa: SIM115 - lives with the listener
        self.listener = subprocess.Popen(
            [str(VENV_BIN / "delivery"), "monitor-listen", "--state-dir", str(self.state_dir)],
            env=self.env(),
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "Listening" in self.listener_log():
                time.sleep(3)  # the subscription is made right after the line
                return
            if self.listener.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"monitor-listen did not start:\n{self.listener_log()[-3000:]}")

    def listener_log(self) -> str:
        path = self.home / "listener.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start_worker(self) -> None:
        log = open(self.home / "worker.log", "ab")  # noqa: SIM115 - lives with the worker
        self.worker = subprocess.Popen(
            [str(VENV_BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", "e2e"],
            env=self.env(),
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with self.client() as client:
                workers = client.read_workers_for_work_pool(POOL)
            if any(w.name == "e2e" for w in workers):
                return
            if self.worker.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.worker_log()[-3000:]}")
            time.sleep(0.5)
        raise RuntimeError(f"worker did not register:\n{self.worker_log()[-3000:]}")

    def worker_log(self) -> str:
        path = self.home / "worker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Everything this stack started, in reverse order, whatever failed before."""
        for run in self.runs:
            _kill_group(run.proc, timeout=5)
        _kill_group(self.listener)
        _kill_group(self.worker)
        if self.server is not None and self.server.proc and self.server.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.delivery("down", timeout=120, check=False)
        # flow-run processes the worker started (they carry the stack's state folder)
        for pid in processes_with_env("DELIVERY_STATE_DIR", str(self.state_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.server is not None:
            self.server.stop()

    # ------------------------------------------------------------------ runs
    def deployment_run(self, name: str, *params: str, timeout_s: int = 900) -> DeploymentRun:
        """Start ``prefect deployment run NAME -p ... --watch`` and wait for the run's id."""
        log = self.home / f"watch-{len(self.runs)}.log"
        argv = [str(VENV_BIN / "prefect"), "deployment", "run", name, "--watch"]
        argv += ["--watch-timeout", str(timeout_s)]
        for param in params:
            argv += ["-p", param]
        out = open(log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv,
            env=self.env(),
            cwd=self.project_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        run = DeploymentRun(proc=proc, log=log)
        self.runs.append(run)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            match = UUID_LINE.search(run.output())
            if match:
                run.flow_run_id = match.group(1)
                return run
            if proc.poll() is not None:
                raise AssertionError(f"deployment run exited {proc.returncode}:\n{run.output()}")
            time.sleep(0.2)
        raise AssertionError(f"no flow run id from deployment run:\n{run.output()}")

    def flow_run(self, flow_run_id: str):
        with self.client() as client:
            return client.read_flow_run(UUID(flow_run_id))

    def wait_for_state(
        self, flow_run_id: str, names: set[str], timeout: float = 600, final_ok: bool = False
    ):
        """Poll until the run's state name is one of ``names``; fail early on a final state."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.flow_run(flow_run_id).state
            if state is not None and state.name in names:
                return state
            if state is not None and state.is_final() and not final_ok:
                raise AssertionError(
                    f"run {flow_run_id} ended {state.name}: {state.message}\n"
                    f"{self.logs(flow_run_id)[-4000:]}"
                )
            time.sleep(0.5)
        raise AssertionError(
            f"run {flow_run_id} not in {names} after {timeout}s (state "
            f"{state.name if state else None})\n{self.logs(flow_run_id)[-4000:]}"
        )

    def logs(self, flow_run_id: str) -> str:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        with self.client() as client:
            logs = client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])), limit=200
            )
        return "\n".join(f"{log.level} {log.message}" for log in logs)

    def artifacts(self, flow_run_id: str) -> list[Any]:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        with self.client() as client:
            return client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
                )
            )

    def status(self) -> dict[str, dict]:
        out = self.delivery("status", "--json").stdout
        return {r["environment"]: r for r in json.loads(out)}

    def served(self, environment: str) -> dict:
        port = self.production_port if environment == "production" else self.staging_port
        return httpclient.get(f"http://127.0.0.1:{port}/version", timeout=5).json()

    def ledger(self, environment: str, service: str = "hello-service") -> list[dict]:
        path = self.state_dir / "ledger" / environment / f"{service}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def post_events(stack: ServerStack, *events: dict) -> None:
    """Send events the way any outside system can: POST them to the server's events API."""
    import uuid
    from datetime import UTC, datetime

    body = [
        {"id": str(uuid.uuid4()), "occurred": datetime.now(UTC).isoformat(), **event}
        for event in events
    ]
    response = httpx.post(f"{stack.api_url}/events", json=body, timeout=10)
    response.raise_for_status()


def read_events(stack: ServerStack, name: str, resource_id: str | None = None) -> list[dict]:
    """Events of one name (newest first), optionally for one resource id."""
    filter_: dict[str, Any] = {"event": {"name": [name]}, "order": "DESC"}
    if resource_id:
        filter_["resource"] = {"id": [resource_id]}
    response = httpx.post(
        f"{stack.api_url}/events/filter", json={"filter": filter_, "limit": 50}, timeout=10
    )
    response.raise_for_status()
    return response.json()["events"]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_for_event(
    stack: ServerStack, name: str, predicate, resource_id: str | None = None, timeout: float = 30
) -> dict:
    """The newest event of that name matching the predicate (events are stored async)."""

    def find():
        return next((e for e in read_events(stack, name, resource_id) if predicate(e)), None)

    return wait_until(find, timeout, f"a {name} event")
