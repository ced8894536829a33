"""Fixtures for the container path: the local Docker engine and registry, a real Prefect server,
real HAProxy. Every test here skips (with the reason) when `docker info` fails; `.ci/run` sets
DELIVERY_REQUIRE_DOCKER=1, which turns that skip into a failure.

What a session creates is removed at its end: containers carry the session's scope label, images
are pushed under the session's own registry namespace (manifests deleted, local images removed).
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from support import free_port, short_tmpdir, unique_name
from support.docker import (
    WEB_BASE,
    cleanup_namespace,
    docker_client_or_skip,
    remove_containers,
    require_local_registry,
    unique,
)
from support.pipeline import register, stop_environment, verification_for_tests

_counter = itertools.count()


@pytest.fixture(scope="session")
def docker_client():
    client = docker_client_or_skip()
    require_local_registry()
    try:
        client.images.get(WEB_BASE)
    except Exception:  # noqa: BLE001 - ImageNotFound or an engine error: either way, say what
        client.images.pull(WEB_BASE)  # pushed there by .ci/docker/base-image.sh --push
    yield client
    client.close()


@pytest.fixture(scope="session")
def namespace(docker_client):
    """Registry namespace of this session: images are 127.0.0.1:5000/<namespace>/<service>."""
    name = unique("pd-test-")
    yield name
    cleanup_namespace(docker_client, name)


@pytest.fixture(scope="session")
def scope(docker_client):
    """Label of every container this session starts (DockerTarget.scope)."""
    name = unique("pdtest")
    yield name
    remove_containers(docker_client, name)


@pytest.fixture(scope="session", autouse=True)
def _api(docker_client, prefect_server):
    if not shutil.which("haproxy"):
        pytest.fail("haproxy is not installed; `.ci/run` and `make test` install it")
    yield


@pytest.fixture(scope="session")
def state_dir() -> Path:
    path = short_tmpdir("pd-dstate-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def image_registry(namespace):
    """The local registry, this session's namespace, built FROM the offline python-web image."""
    from prefect_delivery.blocks.registry import ImageRegistry

    return ImageRegistry(namespace=namespace, build_args={"BASE_IMAGE": WEB_BASE})


@pytest.fixture(scope="session")
def docker_store(state_dir, image_registry) -> str:
    """Name of a saved ArtifactStore whose registry is the local one."""
    from prefect_delivery.blocks.artifacts import ArtifactStore

    ArtifactStore(root=str(state_dir / "artifacts"), registry=image_registry).save(
        "test-docker-artifacts", overwrite=True
    )
    return "test-docker-artifacts"


@pytest.fixture
def save_store(state_dir):
    """Save an ArtifactStore with a given ImageRegistry under a fresh name; returns the name."""
    from prefect_delivery.blocks.artifacts import ArtifactStore

    def save(registry) -> str:
        name = f"test-docker-store-{next(_counter)}"
        ArtifactStore(root=str(state_dir / "artifacts"), registry=registry).save(
            name, overwrite=True
        )
        return name

    return save


@pytest.fixture
def make_docker_env(state_dir, scope):
    """Create and save an Environment on a DockerTarget, on a free frontend port."""
    from prefect_delivery.blocks.settings import StrategySettings
    from prefect_delivery.blocks.targets.docker import DockerTarget
    from prefect_delivery.flows.cli.setup import environment

    created = []

    def make(role: str = "stg", *, kind: str = "blue-green", instances: int = 1, bake_s=0.0):
        name = unique_name(f"d{role}")
        env = environment(
            name,
            free_port(),
            str(state_dir),
            StrategySettings(
                kind=kind,
                instances=instances,
                keep_previous_s=0,
                step_pause_s=2,
                analysis_interval_s=0.5,
            ),
            bake_s,
            False,
            verification_for_tests(),
            target=DockerTarget(scope=scope, health_interval_s=0.5),
        )
        env.save(name, overwrite=True)
        scoped = register(env)
        created.append(scoped)
        return scoped

    yield make
    for env in created:
        stop_environment(env)


@pytest.fixture
def image_repo():
    """A git repository holding a copy of hello-service built as an image."""
    from prefect_delivery.flows.cli.demo import prepare_repo, set_build_kind

    root = short_tmpdir("pd-irepo-")
    repo = prepare_repo(root)
    set_build_kind(repo, "image")
    yield repo
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def built_image(state_dir, image_registry):
    """hello-service 3.0.0 built and pushed once for the session (a Release pinned by digest)."""
    from support.pipeline import commit_release

    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.flows.cli.demo import prepare_repo, set_build_kind
    from prefect_delivery.tasks.build import build, checkout
    from prefect_delivery.tasks.source import resolve_source

    root = short_tmpdir("pd-irepo-")
    repo = prepare_repo(root)
    set_build_kind(repo, "image")
    sha = commit_release(repo, "3.0.0")
    co = checkout.fn(resolve_source(repo.path, sha))
    store = ArtifactStore(root=str(state_dir / "artifacts"), registry=image_registry)
    yield build.fn(co, store)
    shutil.rmtree(root, ignore_errors=True)
