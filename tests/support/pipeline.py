"""Helpers for tests that run the delivery pipeline for real."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect_delivery.blocks import httpclient
from prefect_delivery.flows.cli.demo import DemoRepo, prepare_repo

#: One commit date for this pytest process: in every test's repository the same content on the
#: same parents is the same commit, so the pipeline builds and tests it once per session by its
#: own rule (one artifact per commit, a passing suite once per commit and digest), as a team's
#: CI meets a commit it has seen. A test that needs a build of its own commits different content
#: (a fault, a file) or uses a repository of its own. Each pytest-xdist worker dates its commits
#: a day apart from the others', so two workers never deliver one commit at the same time (they
#: would share its build workspace).
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
SESSION_COMMIT_DATE = f"{int(time.time()) - 86400 * _WORKER} +0000"


def session_repo(root: Path, **kwargs) -> DemoRepo:
    """A fresh copy of hello-service (or ``source=``) in a git repository under ``root``, whose
    commits are reproducible within the session (:data:`SESSION_COMMIT_DATE`)."""
    repo = prepare_repo(root, **kwargs)
    repo.commit_date = SESSION_COMMIT_DATE
    return repo


def rename_service(repo, name: str) -> None:
    """Make the repository's copy of hello-service another service: its delivery.toml names
    ``name`` (the code stays the same: what tells two services apart is their name)."""
    import re

    manifest = Path(repo.path) / "delivery.toml"
    manifest.write_text(
        re.sub(r'^name = ".*"$', f'name = "{name}"', manifest.read_text(), count=1, flags=re.M)
    )


def commit_release(
    repo,
    version: str,
    fault: str = "none",
    extra: dict | None = None,
    startup_timeout_s: float | None = None,
) -> str:
    """Commit a release of hello-service: its version, a baked fault, extra files."""
    import re

    from prefect_delivery.flows.cli.demo import set_fault, set_version

    set_version(repo, version)
    set_fault(repo, fault)
    if startup_timeout_s is not None:
        manifest = Path(repo.path) / "delivery.toml"
        manifest.write_text(
            re.sub(
                r"^startup_timeout_s = .*$",
                f"startup_timeout_s = {startup_timeout_s}",
                manifest.read_text(),
                flags=re.M,
            )
        )
    for relpath, text in (extra or {}).items():
        path = Path(repo.path) / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return repo.commit_all(f"release {version} ({fault})")


def deliver(repo, commit: str, envs, store: str, **kwargs):
    """Run the delivery flow; returns (summary, error) where error is the DeliveryFailed."""
    from prefect_delivery.flows.delivery import DeliveryFailed, delivery

    try:
        summary = delivery(
            service_dir=repo.path,
            commit=commit,
            environments=[e.name for e in envs],
            auto_approve=kwargs.pop("auto_approve", True),
            artifact_store=store,
            **kwargs,
        )
        return summary, None
    except DeliveryFailed as exc:
        return exc.summary, exc


def served_version(env) -> dict:
    return httpclient.get(env.url + "/version", timeout=5).json()


def build_release(repo, version: str, fault: str = "none", store_root: str = "") -> object:
    """Commit and build one release of hello-service without running a delivery."""
    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.tasks.build import build, checkout
    from prefect_delivery.tasks.source import resolve_source

    sha = commit_release(repo, version, fault=fault, startup_timeout_s=5)
    co = checkout.fn(resolve_source(repo.path, sha))
    return build.fn(co, ArtifactStore(root=store_root))


def verification_for_tests():
    """Verification of test environments: the shipped thresholds of the judge (alpha 1 %,
    latency tolerance 10 %, no slack), with a smaller burst (100 requests) to keep tests
    short. The judge compares with the stable release in the same intervals, so a loaded
    machine slows both sides and does not fail a good release."""
    from prefect_delivery.blocks.settings import VerificationSettings

    return VerificationSettings(requests=100, min_samples=50)


def register(env, service: str = "hello-service", port: int | None = None, **route):
    """Give ``service`` a route in the saved environment ``env`` (its own frontend port) and
    save it; returns the environment as the service sees it (``for_service``). ``route``:
    ServiceRoute settings (strategy, instances, approvers, database: a block's name, ...)."""
    from prefect_delivery.blocks.environment import Environment
    from prefect_delivery.blocks.services import ServiceRoute
    from support import free_port

    base = Environment.load(env.name)
    base.services = {
        **base.services,
        service: ServiceRoute(port=port or free_port(), **route),
    }
    base.save(env.name, overwrite=True)
    return base.for_service(service)


def update_env(env, **fields):
    """Change environment-wide fields of a saved environment (its policy, its bake, its
    sources...; ``router__haproxy_bin=`` for a nested one) and save it; returns it as
    ``env``'s service sees it again."""
    from prefect_delivery.blocks.environment import Environment

    base = Environment.load(env.name)
    for name, value in fields.items():
        *path, leaf = name.split("__")
        owner = base
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, leaf, value)
    base.save(env.name, overwrite=True)
    return base.for_service(env.service)


def stop_environment(env) -> None:
    """Stop every instance of a test environment and the router of each of its services."""
    for instance in env.target.list(env.name):
        env.target.stop(instance, timeout_s=5)
    base = getattr(env, "_base", None) or env
    for service in base.service_names():
        base.for_service(service).router.stop()
    if getattr(env, "_service", None) is not None:
        env.router.stop()


def paused_approval_runs(after_keys: set[str] | None = None) -> list:
    """Flow runs waiting at an approval gate now (optionally: not under these pause keys)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
            )
        )
    return [
        run
        for run in runs
        if (run.state.state_details.pause_key or "").startswith("approve-")
        and run.state.state_details.pause_key not in (after_keys or set())
    ]


def answer_like_the_ui(run, **answer) -> None:
    """Resume a paused run with this input, as the UI's form does (no client-side checks)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        result = client.resume_flow_run(run.id, run_input=answer)
    assert result.status.value == "ACCEPT", result


def wait_for_gate(seen: set[str], timeout_s: float = 300):
    """The next approval pause (a key not in ``seen``); adds its key to ``seen``."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for run in paused_approval_runs(seen):
            seen.add(run.state.state_details.pause_key)
            return run
        time.sleep(0.3)
    raise AssertionError("no run reached an approval gate")
