"""Fixtures for pipeline tests: real HAProxy, real processes, a real Prefect server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import free_port, short_tmpdir, unique_name
from support.pipeline import register, session_repo, stop_environment, verification_for_tests


@pytest.fixture(scope="session", autouse=True)
def _api(prefect_server):
    if not shutil.which("haproxy"):
        pytest.fail("haproxy is not installed; `.ci/run` and `make test` install it")
    yield


@pytest.fixture(scope="session")
def state_dir() -> Path:
    path = short_tmpdir("pd-state-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def artifact_store(state_dir):
    from prefect_delivery.blocks.artifacts import ArtifactStore

    store = ArtifactStore(root=str(state_dir / "artifacts"))
    store.save("test-artifacts", overwrite=True)
    return "test-artifacts"


@pytest.fixture
def make_env(state_dir):
    """Create and save an Environment block with a unique name on a free port."""
    from prefect_delivery.blocks.settings import PromotionPolicy, StrategySettings
    from prefect_delivery.flows.cli.setup import environment

    created = []

    def make(
        role: str = "stg",
        *,
        kind: str = "blue-green",
        instances: int = 1,
        bake_s: float = 0.0,
        requires_approval: bool = False,
        upstream: str | None = None,
        approvers: tuple[str, ...] = (),
        allow_auto_approval: bool = False,
        service: str = "hello-service",
        **strategy,
    ):
        """An environment with one service registered (``service``, hello-service by
        default): returned as that service sees it (``Environment.for_service``)."""
        name = unique_name(role)
        settings = StrategySettings(
            kind=kind,
            instances=instances,
            keep_previous_s=strategy.pop("keep_previous_s", 0),
            step_pause_s=strategy.pop("step_pause_s", 2),
            analysis_interval_s=strategy.pop("analysis_interval_s", 0.5),
            **strategy,
        )
        env = environment(
            name,
            free_port(),
            str(state_dir),
            settings,
            bake_s,
            requires_approval,
            verification_for_tests(),
            promotion=PromotionPolicy(
                upstream=upstream,
                requires_approval=requires_approval,
                approvers=list(approvers),
                allow_auto_approval=allow_auto_approval,
            ),
        )
        env.save(name, overwrite=True)
        scoped = register(env, service)
        created.append(scoped)
        return scoped

    yield make
    for env in created:
        stop_environment(env)


@pytest.fixture
def hello_repo():
    """A git repository holding a copy of hello-service; commit releases into it. The same
    content on the same parents is the same commit in every test (support.pipeline.session_repo):
    built and tested once per session."""
    root = short_tmpdir("pd-repo-")
    repo = session_repo(root)
    yield repo
    shutil.rmtree(root, ignore_errors=True)
