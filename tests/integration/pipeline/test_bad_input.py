"""Bad input through `delivery run`: one clear message, a non-zero exit, nothing live changes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from support import VENV_BIN
from support.pipeline import commit_release, served_version, update_env

from prefect_delivery.flows.cli import EXIT_BAD_INPUT, EXIT_FAILED


def delivery_cli(*args: str) -> tuple[int, str]:
    """The real `delivery` command in its own process, on the session's Prefect server."""
    proc = subprocess.run(
        [str(VENV_BIN / "delivery"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
    )
    return proc.returncode, proc.stderr


def run_cli(capsys, repo, envs, store, *extra):
    return delivery_cli(
        "run",
        repo.path,
        "--auto-approve",
        "--artifact-store",
        store,
        *sum((["--env", e.name] for e in envs), []),
        *extra,
    )


@pytest.fixture
def live_staging(hello_repo, make_env, artifact_store, capsys):
    """A staging environment already serving release 1.0.0."""
    staging = make_env("stg")
    good = commit_release(hello_repo, "1.0.0")
    code, err = run_cli(capsys, hello_repo, [staging], artifact_store, "--commit", good)
    assert code == 0, err
    return staging, good


def assert_still_serving(env, commit):
    assert served_version(env)["commit"] == commit
    assert {i.release.commit for i in env.target.list(env.name) if i.alive} == {commit}


def test_missing_manifest(capsys, hello_repo, live_staging, artifact_store):
    staging, good = live_staging
    (Path(hello_repo.path) / "delivery.toml").unlink()
    hello_repo.commit_all("no manifest")
    code, err = run_cli(capsys, hello_repo, [staging], artifact_store)
    assert code == EXIT_BAD_INPUT
    assert "delivery.toml at" in err and "is not in the commit" in err and "Fix:" in err
    assert_still_serving(staging, good)


def test_malformed_manifest(capsys, hello_repo, live_staging, artifact_store):
    staging, good = live_staging
    manifest = Path(hello_repo.path) / "delivery.toml"
    manifest.write_text(
        manifest.read_text().replace('health_path = "/healthz"', 'health_path = "healthz"')
    )
    hello_repo.commit_all("bad manifest")
    code, err = run_cli(capsys, hello_repo, [staging], artifact_store)
    assert code == EXIT_BAD_INPUT
    assert "run.health_path = 'healthz'" in err and "starting with '/'" in err
    assert_still_serving(staging, good)


def test_service_without_tests(capsys, hello_repo, live_staging, artifact_store):
    staging, good = live_staging
    shutil.rmtree(Path(hello_repo.path) / "tests")
    hello_repo.commit_all("no tests")
    code, err = run_cli(capsys, hello_repo, [staging], artifact_store)
    assert code == EXIT_BAD_INPUT
    assert "['tests'] not found" in err and "cannot be delivered" in err
    assert_still_serving(staging, good)


def test_health_path_that_404s(capsys, hello_repo, live_staging, artifact_store):
    staging, good = live_staging
    manifest = Path(hello_repo.path) / "delivery.toml"
    manifest.write_text(
        manifest.read_text().replace('health_path = "/healthz"', 'health_path = "/health-typo"')
    )
    hello_repo.commit_all("wrong health path")
    code, err = run_cli(capsys, hello_repo, [staging], artifact_store)
    assert code == EXIT_FAILED
    assert "/health-typo answered 404" in err and "[run].health_path" in err
    assert_still_serving(staging, good)


def test_frontend_port_taken(capsys, hello_repo, make_env, artifact_store):
    staging = make_env("stg")
    holder = socket.socket()
    holder.bind(("127.0.0.1", staging.router.frontend_port))
    holder.listen()
    try:
        commit_release(hello_repo, "1.0.0")
        code, err = run_cli(capsys, hello_repo, [staging], artifact_store)
    finally:
        holder.close()
    assert code == EXIT_BAD_INPUT
    assert f"127.0.0.1:{staging.router.frontend_port} is already in use" in err
    assert staging.target.list(staging.name) == []


def test_haproxy_missing(capsys, hello_repo, make_env, artifact_store):
    staging = update_env(make_env("stg"), router__haproxy_bin="haproxy-not-installed")
    commit_release(hello_repo, "1.0.0")
    code, err = run_cli(capsys, hello_repo, [staging], artifact_store)
    assert code == EXIT_BAD_INPUT
    assert "haproxy-not-installed" in err and "apt-get install haproxy" in err
    assert staging.target.list(staging.name) == []


def test_unknown_environment(capsys, hello_repo, artifact_store):
    commit_release(hello_repo, "1.0.0")
    code, err = delivery_cli(
        "run", hello_repo.path, "--env", "nowhere", "--artifact-store", artifact_store
    )
    assert code == EXIT_BAD_INPUT
    assert "environment 'nowhere'" in err and "no Environment block" in err


def test_unknown_commit(capsys, hello_repo, make_env, artifact_store):
    staging = make_env("stg")
    code, err = run_cli(capsys, hello_repo, [staging], artifact_store, "--commit", "deadbeef")
    assert code == EXIT_BAD_INPUT
    assert "'deadbeef' is not a commit" in err


def test_setup_with_an_in_place_strategy_saves_nothing(tmp_path):
    before = {name: _saved(name) for name in ("artifacts", "staging", "production")}
    code, err = delivery_cli(
        "setup", "--state-dir", str(tmp_path), "--strategy", "recreate", "--no-database"
    )
    assert code == EXIT_BAD_INPUT, err
    assert err.count("\n") == 1, err  # one message, no traceback
    assert "--strategy" in err and "restarts the live release in place" in err
    assert "Fix:" in err
    after = {name: _saved(name) for name in before}
    assert after == before  # nothing was saved or changed


def _saved(name: str) -> list[tuple[str, str]]:
    """(id, updated) of every saved block document called ``name``."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        found = client.read_block_documents(include_secrets=False)
    return sorted((str(d.id), str(getattr(d, "updated", ""))) for d in found if d.name == name)


def test_environment_block_edited_into_an_invalid_state(
    capsys, hello_repo, make_env, artifact_store
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentUpdate

    staging = make_env("stg")
    good = commit_release(hello_repo, "1.0.0")
    code, err = run_cli(capsys, hello_repo, [staging], artifact_store, "--commit", good)
    assert code == 0, err
    # someone edits the saved block in the UI: canary steps that go backwards
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            staging.name, "delivery-environment", include_secrets=True
        )
        data = dict(document.data)
        data["strategy"] = {**data["strategy"], "kind": "canary", "canary_steps": [50, 5, 100]}
        client.update_block_document(
            document.id, BlockDocumentUpdate(data=data, merge_existing_data=False)
        )
    second = commit_release(hello_repo, "1.1.0")
    code, err = run_cli(capsys, hello_repo, [staging], artifact_store, "--commit", second)
    assert code == EXIT_BAD_INPUT, err
    assert (
        f"Environment block '{staging.name}': is saved with settings that are not valid" in err
    ), err
    assert "strategy.canary_steps" in err and "not increasing" in err and "Fix:" in err
    assert_still_serving(staging, good)


def test_instance_secret_block_that_does_not_exist(capsys, hello_repo, make_env, artifact_store):
    staging = make_env("stg")
    good = commit_release(hello_repo, "1.0.0")
    code, err = run_cli(capsys, hello_repo, [staging], artifact_store, "--commit", good)
    assert code == 0, err
    staging = update_env(staging, instance_secrets={"PAYMENTS_TOKEN": "payments-token-nowhere"})
    second = commit_release(hello_repo, "1.1.0")
    code, err = run_cli(capsys, hello_repo, [staging], artifact_store, "--commit", second)
    assert code == EXIT_BAD_INPUT, err
    assert f"environment {staging.name}, instance_secrets[PAYMENTS_TOKEN]" in err
    assert "no Secret block named 'payments-token-nowhere'" in err and "Fix:" in err
    assert_still_serving(staging, good)


# ---------------------------------------------------------------------------- services
def test_a_service_without_a_route_is_refused_before_anything_runs(
    capsys, hello_repo, live_staging, artifact_store
):
    """A second service, never registered, sent into an environment that carries another:
    refused before the build, with the fix; what runs there is untouched."""
    from support.pipeline import rename_service

    staging, good = live_staging
    rename_service(hello_repo, "stranger")
    sha = commit_release(hello_repo, "9.9.9")
    code, err = run_cli(capsys, hello_repo, [staging], artifact_store, "--commit", sha)
    assert code == EXIT_BAD_INPUT, err
    last = err.strip().splitlines()[-1]  # the command's own message, after the run's log
    assert last.startswith("delivery: ") and "service 'stranger' has no route" in last
    assert "delivery service add" in err and "Fix:" in err
    assert "registered there: hello-service" in err
    assert not any(Path(staging.state_dir, "artifacts", "stranger").glob("*"))  # never built
    assert_still_serving(staging, good)


def test_service_add_gives_distinct_ports_and_refuses_a_weaker_policy(
    make_env, hello_repo, tmp_path
):
    """`delivery service add`: a route per environment on a port no other service has, the
    settings checked against each environment's policy before anything is saved."""
    from support.pipeline import rename_service

    from prefect_delivery.blocks.environment import Environment

    staging = make_env("sas")
    production = make_env("sap", requires_approval=True, approvers=("alice", "bob"))
    rename_service(hello_repo, "billing")
    envs = ["--env", staging.name, "--env", production.name]
    code, err = delivery_cli("service", "add", hello_repo.path, *envs, "--approvers", "mallory")
    assert code == EXIT_BAD_INPUT, err
    assert "nobody could approve" in err and "Fix:" in err
    assert "billing" not in Environment.load(production.name).services  # nothing saved
    code, err = delivery_cli("service", "add", hello_repo.path, *envs, "--approvers", "bob")
    assert code == 0, err
    ports = set()
    for env in (staging, production):
        saved = Environment.load(env.name)
        assert set(saved.services) == {"hello-service", "billing"}
        ports |= {route.port for route in saved.services.values()}
        billing = saved.for_service("billing")
        assert billing.router.route_name == "be_billing"  # what HAProxy's stats say
    assert len(ports) == 4  # two services, two environments: four frontends
    assert Environment.load(production.name).for_service("billing").promotion.approvers == ["bob"]
    code, err = delivery_cli(
        "service",
        "add",
        hello_repo.path,
        "--env",
        staging.name,
        "--port",
        f"{staging.name}={staging.router.frontend_port}",
    )
    assert code == EXIT_BAD_INPUT and "another service's frontend port" in err, err
