"""A setup written before services existed keeps working: its one service becomes a
registered one, what runs keeps running (its router is the same process), its history stays
its own, and a second service can join it.

The state is written by the code of the last commit before services (``BEFORE_SERVICES``,
exported from this repository's history and run on the same interpreter): an environment
block, two deliveries of hello-service (its ledger, its router, its instances). Then today's
code takes over under steady load: status, a delivery, a rollback, the report, a second service.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest
from support import ROOT, VENV_BIN, SteadyLoad, free_port, short_tmpdir, unique_name
from support.pipeline import commit_release, rename_service, served_version

#: the last commit of main before services: what wrote the state folder a user has
BEFORE_SERVICES = "ce74bd5"


def old_code() -> Path:
    """The package as it was at BEFORE_SERVICES, importable as ``prefect_delivery``."""
    folder = short_tmpdir("pd-old-code-")
    archive = subprocess.run(
        [
            "git",
            "-C",
            str(ROOT),
            "archive",
            "--format=tar",
            BEFORE_SERVICES,
            "flows",
            "tasks",
            "blocks",
            "migrations_lab",
        ],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.fail(f"git archive {BEFORE_SERVICES}: {archive.stderr.decode()[-500:]}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(folder / "prefect_delivery", filter="data")
    return folder


def old_delivery(code: Path, *args: str) -> subprocess.CompletedProcess:
    """`delivery ARGS` as the code before services runs it (its own interpreter process)."""
    script = (
        "import sys; from prefect_delivery.flows.cli import main; sys.argv[0] = 'delivery'; "
        "sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(code)},
    )


def delivery(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "delivery"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
    )


MAKE_ENV = """
import sys
from prefect_delivery.blocks.settings import StrategySettings, VerificationSettings
from prefect_delivery.flows.cli.setup import environment
name, port, state = sys.argv[1], int(sys.argv[2]), sys.argv[3]
environment(
    name, port, state,
    StrategySettings(kind="blue-green", instances=1, keep_previous_s=3600, step_pause_s=2,
                     analysis_interval_s=0.5),
    0.0, False, VerificationSettings(requests=100, min_samples=50),
).save(name, overwrite=True)
"""


def test_a_state_folder_written_before_services_keeps_working(
    state_dir, hello_repo, artifact_store
):
    from prefect_delivery.blocks.environment import Environment

    code = old_code()
    name, port = unique_name("old"), free_port()
    made = subprocess.run(
        [sys.executable, "-c", MAKE_ENV, name, str(port), str(state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(code)},
    )
    assert made.returncode == 0, made.stderr[-2000:]
    old = old_delivery(code, "service", "list")  # it really is the code before services:
    assert old.returncode == 2 and "invalid choice: 'service'" in old.stderr, old.stderr
    commits = []
    for version in ("1.0.0", "1.1.0"):
        sha = commit_release(hello_repo, version)
        run = old_delivery(
            code,
            "run",
            hello_repo.path,
            "--commit",
            sha,
            "--env",
            name,
            "--auto-approve",
            "--artifact-store",
            artifact_store,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        commits.append(sha)
    old_ledger = Path(state_dir) / "ledger" / f"{name}.jsonl"
    assert old_ledger.is_file()  # the old layout: one ledger per environment
    router_pid = int((Path(state_dir) / "haproxy" / name / "haproxy.pid").read_text().split()[0])
    old_lines = old_ledger.read_text()

    try:
        # today's code: the one service is a registered one, read without the Prefect API
        run = delivery("status", "--env", name, "--json", "--state-dir", str(state_dir))
        assert run.returncode == 0, run.stderr
        (row,) = json.loads(run.stdout)
        assert row["service"] == "hello-service" and row["live"]["commit"] == commits[1]
        assert row["url"] == f"http://127.0.0.1:{port}"

        with SteadyLoad(f"http://127.0.0.1:{port}") as load:
            # a delivery by today's code: judged against the release the old code verified
            third = commit_release(hello_repo, "1.2.0")
            run = delivery(
                "run",
                hello_repo.path,
                "--commit",
                third,
                "--env",
                name,
                "--auto-approve",
                "--artifact-store",
                artifact_store,
            )
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
            env = Environment.load(name)
            assert env.services["hello-service"].adopted  # kept, so it stays this service's
            hello = env.for_service("hello-service")
            verified = hello.ledger().last("verified")
            previous = next(r for r in hello.ledger().verified_releases() if r.commit == commits[1])
            assert verified.release.commit == third
            assert verified.details["previous"] == previous.digest
            # a rollback by today's code: back to what the old code delivered, still warm
            run = delivery(
                "rollback", name, "--reason", "after the upgrade", "--state-dir", str(state_dir)
            )
            assert run.returncode == 0, run.stdout + run.stderr
            assert "all traffic on hello-service 1.1.0" in run.stdout  # the break-glass switch
            assert served_version(hello)["commit"] == commits[1]
        assert load.result.failed == 0, load.result.statuses
        # the router the old code started serves on: never restarted by the upgrade
        assert hello.router.pid() == router_pid
        assert old_ledger.read_text() == old_lines  # the old ledger is read, never written

        run = delivery("report", "--env", name, "--json", "--state-dir", str(state_dir))
        (figures,) = json.loads(run.stdout)
        assert figures["service"] == "hello-service" and figures["verified"] == 3

        # a second service joins the environment: its own port, and the first keeps serving
        rename_service(hello_repo, "billing")
        run = delivery("service", "add", hello_repo.path, "--env", name, "--no-database")
        assert run.returncode == 0, run.stdout + run.stderr
        billing = Environment.load(name).for_service("billing")
        assert billing.router.frontend_port != port
        assert served_version(hello)["commit"] == commits[1]
        run = delivery("status", "--env", name, "--json", "--state-dir", str(state_dir))
        assert {r["service"] for r in json.loads(run.stdout)} == {"hello-service", "billing"}
    finally:
        delivery("down", "--env", name, "--state-dir", str(state_dir))
