"""Kill the delivery (SIGKILL) at every stage boundary and in the middle of a canary step,
under steady load; the environments keep serving, and a re-run of the same delivery finishes
the job with nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from support import VENV_BIN, SteadyLoad
from support.pipeline import commit_release, deliver


def delivery_run(repo, commit: str, envs, store: str, kill_at: str | None = None):
    env = dict(os.environ)
    if kill_at:
        env["DELIVERY_KILL_AT"] = kill_at
    return subprocess.run(
        [
            str(VENV_BIN / "delivery"),
            "run",
            repo.path,
            "--commit",
            commit,
            "--auto-approve",
            "--artifact-store",
            store,
            *sum((["--env", e.name] for e in envs), []),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def haproxy_pids(env) -> list[int]:
    config = str(env.router.config_path)
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"haproxy") and config.encode() in argv:
                pids.append(int(proc.name))
    return pids


def assert_converged(env, commit: str) -> None:
    """Only the new release runs and takes traffic; no orphans, no half-applied weights."""
    instances = env.target.list(env.name)
    assert instances and all(i.alive for i in instances), instances
    assert {i.release.commit for i in instances} == {commit}
    addresses = {i.address for i in instances}
    weights = env.router.weights()
    assert set(weights) == addresses, (weights, addresses)  # every routed slot is ours
    assert all(w > 0 for w in weights.values()), weights
    assert env.observe().unknown_servers == []
    assert len(haproxy_pids(env)) == 1, "exactly one HAProxy per environment"
    assert httpx.get(env.url + "/version", timeout=5).json()["commit"] == commit


@pytest.mark.timeout(1800)  # nine deliveries killed and re-run: minutes, more on a busy machine
def test_kill_at_every_stage_boundary_then_rerun(hello_repo, make_env, artifact_store):
    staging = make_env("kst")
    production = make_env(
        "kpr",
        kind="canary",
        canary_steps=[20, 100],
        step_pause_s=1.5,
        analysis_interval_s=0.5,
        bake_s=2.0,
    )
    envs = [staging, production]
    first = commit_release(hello_repo, "1.0.0")
    assert deliver(hello_repo, first, envs, artifact_store)[1] is None

    points = [
        "after-build",
        "after-test",
        f"launched-{staging.name}",
        f"shifted-{staging.name}-100",
        f"deployed-{staging.name}",
        f"launched-{production.name}",
        f"analysis-{production.name}",
        f"deployed-{production.name}",
        f"bake-{production.name}",
    ]
    # 20 requests/s on each: a kill that took a service down would cost seconds of failures,
    # and the two loads run for the whole test (minutes), so a faster pace buys nothing here
    with (
        SteadyLoad(staging.url, rate_per_s=20) as load_stg,
        SteadyLoad(production.url, rate_per_s=20) as load_prd,
    ):
        for n, point in enumerate(points, start=2):
            sha = commit_release(hello_repo, f"{n}.0.0")
            killed = delivery_run(hello_repo, sha, envs, artifact_store, kill_at=point)
            assert killed.returncode == -signal.SIGKILL, (
                f"{point}: the run was not killed there (exit {killed.returncode})\n"
                + killed.stderr[-2000:]
            )
            rerun = delivery_run(hello_repo, sha, envs, artifact_store)
            assert rerun.returncode == 0, f"re-run after {point}:\n{rerun.stderr[-3000:]}"
            for env in envs:
                assert_converged(env, sha)
            # never deployed twice in parallel: each environment's deploy events alternate
            # with their outcome, one release at a time
            for env in envs:
                entries = [e for e in env.ledger().entries() if e.release.commit == sha]
                assert [e.event for e in entries].count("verified") == 1, point
    assert load_stg.result.failed == 0, load_stg.result.statuses
    assert load_prd.result.failed == 0, load_prd.result.statuses
    assert load_prd.result.requests > 1000
