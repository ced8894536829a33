"""`delivery plan` against a live environment: real HAProxy, a real process serving hello-service
release 1, a real PostgreSQL at revision 0001. The plan of release 2 says what a delivery would
do (canary steps and weights, pending migration 0002, the approval) and changes nothing: the
router's weights, the processes, the database's schema, the ledger and every file of the state
folder are the same before and after (and after bad input too)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support import free_port, short_tmpdir
from support.migration import commit_schema_release, database_for, start_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prefect_delivery.flows.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"},  # unreachable
    )


@pytest.fixture(scope="module")
def live():
    """Release 1 serving in `prd-see` (canary policy, approval by alice, 60 s bake) with its
    schema (0001) applied; release 2 (0002, an expand) committed but not delivered."""
    if not shutil.which("haproxy"):
        pytest.fail("haproxy is not installed; `.ci/run` and `make test` install it")
    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.blocks.services import ServiceRoute
    from prefect_delivery.blocks.settings import PromotionPolicy, StrategySettings
    from prefect_delivery.flows.cli.demo import prepare_repo
    from prefect_delivery.flows.cli.setup import environment
    from prefect_delivery.tasks.build import build, checkout
    from prefect_delivery.tasks.migrate import apply_migrations, plan_migration, record_migration
    from prefect_delivery.tasks.source import resolve_source

    root = short_tmpdir("pd-see-")
    repo = prepare_repo(root / "repo")
    first = commit_schema_release(repo, 1)
    second = commit_schema_release(repo, 2)
    fourth = commit_schema_release(repo, 4)  # 0002-0004: expand, migrate, contract
    release = build.fn(
        checkout.fn(resolve_source(repo.path, first)),
        ArtifactStore(root=str(root / "artifacts")),
    )
    cluster = start_cluster()
    state = root / "state"
    env = environment(
        "prd-see",
        free_port(),
        str(state),
        StrategySettings(kind="canary", instances=1, canary_steps=[10, 50, 100], step_pause_s=30),
        60.0,
        True,
        promotion=PromotionPolicy(requires_approval=True, approvers=["alice"]),
    )
    env.services = {"hello-service": ServiceRoute(port=free_port())}
    env = env.for_service("hello-service")  # hello-service's part of it, its database:
    env.database = database_for(cluster, "prd_see")  # (a block a route would name)
    env.remember()
    try:
        plan = plan_migration.fn(env, release)
        applied = apply_migrations.fn(env, plan)
        record_migration(env, release, plan, "applied", None, applied)
        instance = env.target.start(release, env.name, "blue", env=env.instance_env())
        env.router.ensure_started()
        env.router.attach(instance.address)
        env.router.wait_until_up(instance.address)
        env.router.set_weights({instance.address: 2})
        env.ledger().append("deployed", release, None, instances=[instance.id])
        env.ledger().append("verified", release, None, previous=None)
        deadline = time.monotonic() + 20
        while httpx.get(env.url + "/version", timeout=2).status_code != 200:
            assert time.monotonic() < deadline, "release 1 did not answer through HAProxy"
            time.sleep(0.2)
        yield {
            "env": env,
            "repo": repo,
            "second": second,
            "fourth": fourth,
            "release": release,
            "cluster": cluster,
            "state": state,
        }
    finally:
        for inst in env.target.list(env.name):
            env.target.stop(inst, timeout_s=5)
        env.router.stop()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_socket()
    }


def _observed(live) -> dict:
    from support.migration import revision

    env, cluster = live["env"], live["cluster"]
    db = env.database.url.get_secret_value().rsplit("/", 1)[-1]
    return {
        "weights": env.router.weights(),
        "slots": [(s.name, s.address, s.weight, s.status) for s in env.router.slots()],
        "processes": sorted((i.id, i.handle, i.alive) for i in env.target.list(env.name)),
        "revision": revision(cluster, env),
        "tables": cluster.execute(
            db,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' ORDER BY 1",
        ),
        "ledger": env.ledger().path.read_bytes(),
        "files": _files(live["state"]),
        "serves": httpx.get(env.url + "/version", timeout=5).json(),
    }


def test_plan_says_what_a_delivery_would_do_and_changes_nothing(live):
    before = _observed(live)
    assert before["revision"] == "0001" and before["weights"]
    out = _cli(
        "plan",
        live["repo"].path,
        "--commit",
        live["second"],
        "--env",
        "prd-see",
        "--state-dir",
        str(live["state"]),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    after = _observed(live)
    assert after == before

    assert plan["commit"] == live["second"]
    (env,) = plan["environments"]
    assert env["action"] == "deploy"
    assert env["serving"] == live["release"].label
    assert env["approval"].startswith("approval by alice")
    assert "approval prd-see" in plan["stages"] and "migrate prd-see" in plan["stages"]
    assert env["schema_at"] == "0001"
    assert [(m["revision"], m["phase"]) for m in env["migrations"]] == [("0002", "expand")]
    shifts = [s for s in env["steps"] if s["new_percent"] is not None]
    assert [s["new_percent"] for s in shifts] == [10, 50, 100]
    assert shifts[0]["weights"] == {"new": [20], "stable": [180]}
    analyses = [s for s in env["steps"] if s["step"].startswith("analyze")]
    assert [(a["min_s"], a["max_s"]) for a in analyses] == [(30.0, 90.0), (30.0, 90.0)]
    assert env["min_s"] == pytest.approx(60 + 60)  # two windows and the bake


def test_plan_text_names_the_gates(live):
    out = _cli(
        "plan",
        live["repo"].path,
        "--commit",
        live["second"],
        "--env",
        "prd-see",
        "--state-dir",
        str(live["state"]),
    )
    assert out.returncode == 0, out.stderr
    assert "migrate   0002 (expand)" in out.stdout
    assert "gate: rehearsed up and down on an ephemeral PostgreSQL first" in out.stdout
    assert "shift 10% of traffic to the new release  weights new [20] stable [180]" in out.stdout


def test_plan_says_the_contract_gate_would_refuse_while_release_1_serves(live):
    before = _observed(live)
    out = _cli(
        "plan",
        live["repo"].path,
        "--commit",
        live["fourth"],
        "--env",
        "prd-see",
        "--state-dir",
        str(live["state"]),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert _observed(live) == before
    (env,) = json.loads(out.stdout)["environments"]
    migrations = {m["revision"]: m for m in env["migrations"]}
    assert [(r, m["phase"]) for r, m in migrations.items()] == [
        ("0002", "expand"),
        ("0003", "migrate"),
        ("0004", "contract"),
    ]
    (gate,) = [g for g in migrations["0004"]["gates"] if g.startswith("schema gate")]
    assert "would refuse" in gate and live["release"].label in gate
    assert "people.name" in gate


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--commit", "f" * 40], "is not a commit of the repository"),
        (["--env", "nowhere"], "environment 'nowhere'"),
        (["--env", "prd-see", "--env", "prd-see"], "names an environment twice"),
    ],
)
def test_bad_input_is_one_message_and_changes_nothing(live, args, message):
    before = _observed(live)
    base = ["plan", live["repo"].path, "--state-dir", str(live["state"])]
    if "--env" not in args:
        base += ["--env", "prd-see"]
    out = _cli(*base, *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and message in out.stderr
    assert _observed(live) == before
