"""No secret leaks: every secret field is seeded with a unique marker, the pipeline runs through
success and failure paths, and everything a user or an attacker could read is scanned.

Secrets seeded (each a unique marker):
- the database URL's password (PostgresDatabase.url), and a wrong one tried later;
- the bearer token of a Prometheus (PrometheusSource.bearer_token), behind a gateway that
  refuses requests without it, in front of a real Prometheus;
- an instance secret (a Prefect Secret block named in Environment.instance_secrets).
(The registry password is scanned by tests/integration/docker/test_image_build.py.)

Runs, each the `delivery` CLI in its own process, as CI runs it:
1. success: schema release 1 through staging and production (migration, deploy, analysis with
   Prometheus, bake), the secrets given to the instances;
2. failure: schema release 2 with 5xx baked in: its migration is applied, verification fails,
   staging rolls back (the exception path with the database URL in scope);
3. failure: the database is down (retried infrastructure fault, then a failed run);
4. failure: a wrong database password (bad input, one message).

Scanned for every marker: the Prefect API (logs, artifacts, flow and task runs with their
parameters and state messages, events, variables), the CLI's stdout/stderr, the command line of
every process alive during the runs (/proc/*/cmdline, sampled), every file under the state
folder and the Prefect home (the server's database and result storage included).
"""

from __future__ import annotations

import http.server
import os
import secrets
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from support import VENV_BIN, free_port, short_tmpdir
from support.migration import commit_schema_release, start_cluster
from support.pipeline import (
    commit_release,
    register,
    stop_environment,
    verification_for_tests,
)

pytestmark = pytest.mark.postgres


def marker(kind: str) -> str:
    return f"pdleak{kind}{secrets.token_hex(6)}"


DB_PASSWORD = marker("dbpw")
WRONG_PASSWORD = marker("wrongpw")
PROM_TOKEN = marker("promtoken")
API_TOKEN = marker("apitoken")
MARKERS = {
    "database password": DB_PASSWORD,
    "wrong database password": WRONG_PASSWORD,
    "prometheus bearer token": PROM_TOKEN,
    "instance secret": API_TOKEN,
}


# ---------------------------------------------------------------------------- helpers
class CmdlineSampler(threading.Thread):
    """Reads /proc/*/cmdline of every process every few ms while the runs go on."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop_event = threading.Event()
        self.samples = 0
        self.seen: set[str] = set()
        self.leaks: list[str] = []

    def run(self):
        while not self.stop_event.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    raw = Path(entry.path, "cmdline").read_bytes()
                except OSError:
                    continue
                text = raw.replace(b"\0", b" ").decode(errors="replace")
                self.seen.add(text)
                for what, value in MARKERS.items():
                    if value in text:
                        self.leaks.append(f"{what} in the command line of {entry.name}: {text}")
            self.samples += 1
            self.stop_event.wait(0.02)

    def stop(self):
        self.stop_event.set()
        self.join(5)


class TokenGateway:
    """What teams put in front of a Prometheus: refuses requests without the bearer token,
    forwards the others to the real Prometheus."""

    def __init__(self, upstream: str, token: str):
        self.upstream = upstream
        self.token = token
        self.authorized = 0
        self.refused = 0
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                if self.headers.get("Authorization") != f"Bearer {gateway.token}":
                    gateway.refused += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                gateway.authorized += 1
                upstream = httpx.get(gateway.upstream + self.path, timeout=10)
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(upstream.content)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def start_prometheus(folder: Path, metrics_ports: list[int]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    targets = ", ".join(f"'127.0.0.1:{p}'" for p in metrics_ports)
    (folder / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: haproxy\n"
        f"    static_configs:\n      - targets: [{targets}]\n"
    )
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'db'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("prometheus did not become ready")


def run_cli(repo, commit: str, envs, store: str) -> subprocess.CompletedProcess:
    args = [str(VENV_BIN / "delivery"), "run", repo.path, "--commit", commit, "--auto-approve"]
    args += ["--artifact-store", store]
    for env in envs:
        args += ["--env", env.name]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def scan_text(where: str, text: str) -> list[str]:
    return [f"{what} in {where}" for what, value in MARKERS.items() if value in text]


def instance_output(root: Path, path: Path) -> bool:
    """An instance's own stdout/stderr (``instances/<env>/<id>.log``): the service's, not the
    tool's. A service that prints its secrets puts them there; the tool keeps the file to its
    owner (0600) and never copies it anywhere else, which the rest of the scan checks."""
    rel = path.relative_to(root).parts
    return len(rel) == 3 and rel[0] == "instances" and path.suffix == ".log"


def scan_files(root: Path) -> tuple[int, list[str]]:
    count, leaks = 0, []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        if instance_output(root, path):
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                leaks.append(f"instance output {path} readable by others (mode {mode:o})")
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        count += 1
        for what, value in MARKERS.items():
            if value.encode() in data:
                leaks.append(f"{what} in the file {path}")
    return count, leaks


def scan_prefect_api(since) -> tuple[dict[str, int], list[str]]:
    """Everything the Prefect API shows about the runs since ``since``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterTimestamp,
    )

    counts: dict[str, int] = {}
    leaks: list[str] = []
    with get_client(sync_client=True) as client:
        logs, offset = [], 0
        while True:
            page = client.read_logs(
                log_filter=LogFilter(timestamp=LogFilterTimestamp(after_=since)),
                limit=200,
                offset=offset,
            )
            logs += page
            offset += len(page)
            if len(page) < 200:
                break
        counts["logs"] = len(logs)
        for log in logs:
            leaks += scan_text(f"a Prefect log ({log.name}): {log.message[:200]}", log.message)

        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)),
            limit=200,
        )
        counts["flow runs"] = len(runs)
        for run in runs:
            leaks += scan_text(f"flow run {run.name}", run.model_dump_json())
            states = client.read_flow_run_states(run.id)
            leaks += scan_text(
                f"the states of flow run {run.name}", "".join(s.model_dump_json() for s in states)
            )
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id={"any_": [run.id]}), limit=200
            )
            counts["task runs"] = counts.get("task runs", 0) + len(tasks)
            for task_run in tasks:
                leaks += scan_text(f"task run {task_run.name}", task_run.model_dump_json())

        artifacts, offset = [], 0
        while True:
            page = client.read_artifacts(limit=200, offset=offset)
            artifacts += page
            offset += len(page)
            if len(page) < 200:
                break
        counts["artifacts"] = len(artifacts)
        for artifact in artifacts:
            leaks += scan_text(f"artifact {artifact.key}", artifact.model_dump_json())

        variables = client.read_variables()
        for variable in variables:
            leaks += scan_text(f"variable {variable.name}", variable.model_dump_json())

        response = client.request(
            "POST",
            "/events/filter",
            json={"filter": {"occurred": {"since": since.isoformat()}}, "limit": 50},
        )
        page = response.json()
        events = list(page.get("events", []))
        while page.get("next_page") and len(events) < 5000:
            page = httpx.get(page["next_page"], timeout=10).json()
            events += page.get("events", [])
        counts["events"] = len(events)
        leaks += scan_text("the events", str(events))
    return counts, leaks


# ---------------------------------------------------------------------------- the test
@pytest.fixture
def cluster():
    cluster = start_cluster()
    yield cluster
    cluster.stop()


def test_no_secret_reaches_anything_readable(hello_repo, artifact_store, state_dir, cluster):
    from datetime import UTC, datetime, timedelta

    from prefect.blocks.system import Secret

    from prefect_delivery.blocks.database import PostgresDatabase
    from prefect_delivery.blocks.metrics.prometheus import PrometheusSource
    from prefect_delivery.blocks.settings import StrategySettings
    from prefect_delivery.flows.cli.setup import environment

    since = datetime.now(UTC) - timedelta(seconds=1)
    sampler = CmdlineSampler()
    sampler.start()
    Secret(value=API_TOKEN).save("scan-payments-token", overwrite=True)

    envs = []
    metrics_ports = [free_port(), free_port()]
    prom_dir = short_tmpdir("pd-scanprom-")
    prometheus, prom_url = start_prometheus(prom_dir, metrics_ports)
    gateway = TokenGateway(prom_url, PROM_TOKEN)
    outputs: list[tuple[str, subprocess.CompletedProcess]] = []

    def attempt(what: str, commit: str, targets) -> subprocess.CompletedProcess:
        run = run_cli(hello_repo, commit, targets, artifact_store)
        outputs.append((what, run))
        return run

    try:
        for role, metrics_port in zip(("scan-stg", "scan-prd"), metrics_ports, strict=True):
            dbname = f"db_{role.replace('-', '_')}"
            cluster.ensure_database(dbname, "scan_app", DB_PASSWORD)
            database = PostgresDatabase(
                url=cluster.url(dbname, "scan_app", DB_PASSWORD),
                lock_timeout_ms=1000,
                lock_retries=1,
            )
            database.save(f"{role}-db", overwrite=True)
            env = environment(
                role,
                free_port(),
                str(state_dir),
                StrategySettings(
                    kind="canary",
                    canary_steps=[50, 100],
                    step_pause_s=3,
                    keep_previous_s=0,
                    analysis_interval_s=0.5,
                ),
                2.0 if role == "scan-prd" else 0.0,
                False,
                verification_for_tests(),
            )
            env.prometheus = PrometheusSource(
                url=gateway.url, bearer_token=PROM_TOKEN, settle_s=1.5
            )
            env.instance_secrets = {"PAYMENTS_TOKEN": "scan-payments-token"}
            env.save(role, overwrite=True)
            envs.append(
                register(
                    env,
                    "hello-service",
                    metrics_port=metrics_port,
                    database=f"{role}-db",
                )
            )
        staging, production = envs

        # 1. success through staging and production
        first = commit_schema_release(hello_repo, 1)
        run = attempt("success", first, envs)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        for env in envs:
            served = [i for i in env.target.list(env.name) if i.alive]
            assert served
            environ = Path(f"/proc/{served[0].handle.split(':')[0]}/environ").read_bytes()
            # the instance got its secrets the way processes get configuration
            assert f"PAYMENTS_TOKEN={API_TOKEN}".encode() in environ
            assert b"DATABASE_URL=postgresql+psycopg://scan_app:" in environ
            assert httpx.get(env.url + "/api/people", timeout=5).status_code == 200

        # 2. a release that fails its canary analysis (slow) after its migration: rolled back
        commit_schema_release(hello_repo, 2)
        bad = commit_release(hello_repo, "1.1.0", fault="slow:0.2")
        run = attempt("analysis failure", bad, envs)
        assert run.returncode == 1, run.stderr[-3000:]
        assert "rolled back" in run.stdout + run.stderr, run.stderr[-3000:]
        assert httpx.get(staging.url + "/version", timeout=5).json()["commit"] == first
        # the canary's analysis asked Prometheus, through the gateway, with the token
        assert gateway.authorized > 0, "the Prometheus source never asked with its token"
        assert gateway.refused == 0

        # 3. the database is down: an infrastructure fault, retried, then the run fails (the
        #    same commit: its build and tests are reused, the migration stage meets the fault)
        cluster.stop()
        try:
            run = attempt("database down", bad, envs)
        finally:
            cluster.start()
        assert run.returncode != 0
        assert "scan_app:***@" in run.stderr + run.stdout

        # 4. a wrong password: bad input, one message
        right = staging.database
        staging.database.model_copy(
            update={
                "url": cluster.url(
                    f"db_{staging.name.replace('-', '_')}", "scan_app", WRONG_PASSWORD
                )
            }
        ).save(f"{staging.name}-db", overwrite=True)
        run = attempt("wrong password", bad, [staging])
        assert run.returncode == 2, run.stderr[-2000:]
        assert "password" in run.stderr
        assert httpx.get(staging.url + "/version", timeout=5).json()["commit"] == first

        # 5. a careless service: it prints its DATABASE_URL and token as it crashes at start-up
        right.save(f"{staging.name}-db", overwrite=True)
        leaky = commit_release(hello_repo, "1.2.0", fault="crash-leak")
        run = attempt("crash that prints its secrets", leaky, [staging])
        assert run.returncode == 1, run.stderr[-3000:]
        assert "exited during start-up" in run.stderr and "**********" in run.stderr
        assert httpx.get(staging.url + "/version", timeout=5).json()["commit"] == first
    finally:
        sampler.stop()
        gateway.stop()
        prometheus.terminate()
        prometheus.wait(10)
        for env in envs:
            stop_environment(env)

    # ------------------------------------------------------------------ the scan
    leaks = list(sampler.leaks)
    assert sampler.samples > 100 and any("delivery run" in c for c in sampler.seen), (
        "the command-line sampler did not see the runs"
    )
    for what, run in outputs:
        leaks += scan_text(f"the stdout of the {what} run", run.stdout)
        leaks += scan_text(f"the stderr of the {what} run", run.stderr)
    counts, api_leaks = scan_prefect_api(since)
    leaks += api_leaks
    assert counts["logs"] > 100 and counts["flow runs"] >= 4 and counts["artifacts"] > 3, counts
    state_files, file_leaks = scan_files(Path(state_dir))
    home_files, home_leaks = scan_files(Path(os.environ["PREFECT_HOME"]))
    leaks += file_leaks + home_leaks
    assert state_files > 10 and home_files > 0
    print(
        f"secret scan: {len(MARKERS)} secrets, {len(outputs)} runs, {sampler.samples} samples "
        f"of /proc/*/cmdline ({len(sampler.seen)} command lines), {counts}, "
        f"{state_files} files under the state folder, {home_files} under PREFECT_HOME"
    )
    assert not leaks, "\n".join(leaks[:30])
