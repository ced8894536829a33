"""The build stage's container path against the real engine and registries.

Also the wrong-password case: a second registry (Debian's docker-registry) with htpasswd auth
on its own loopback port, over plain HTTP (dockerd treats 127.0.0.0/8 as insecure, so login,
push and pull work without TLS).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import docker
import pytest
from support import short_tmpdir
from support.docker import (
    REGISTRY,
    LocalRegistry,
    registry_digest,
    removing_new_untagged_images,
)
from support.pipeline import commit_release

from prefect_delivery.blocks.artifacts import sha256_file
from prefect_delivery.blocks.errors import (
    ConfigError,
    GateFailed,
    InfrastructureError,
    is_retryable,
)

pytestmark = pytest.mark.docker

PASSWORD = "pw-Correct-horse-7781"
WRONG = "pw-Wrong-battery-1234"


def checkout_commit(repo, sha):
    from prefect_delivery.tasks.build import checkout
    from prefect_delivery.tasks.source import resolve_source

    return checkout.fn(resolve_source(repo.path, sha))


def build_with(repo, sha, state_dir, registry):
    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.tasks.build import build

    store = ArtifactStore(root=str(state_dir / "artifacts"), registry=registry)
    return build.fn(checkout_commit(repo, sha), store)


def test_image_is_tagged_with_the_sha_pushed_and_pinned_by_the_registry_digest(
    built_image, namespace, docker_client
):
    artifact = built_image.artifact
    repository = f"{REGISTRY}/{namespace}/hello-service"
    assert artifact.kind == "image"
    assert artifact.filename == f"{repository}:{built_image.commit}"
    assert artifact.uri == f"{repository}@{built_image.digest}"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", built_image.digest)
    # the registry itself serves that manifest under the commit's tag
    path = f"{namespace}/hello-service"
    assert registry_digest(REGISTRY, path, built_image.commit) == built_image.digest
    assert registry_digest(REGISTRY, path, "latest") is None
    # the image carries the commit and the wheel it installs (the one the tests ran against)
    image = docker_client.images.get(artifact.uri)
    labels = image.labels
    assert labels["org.opencontainers.image.revision"] == built_image.commit
    assert labels["org.prefect-delivery.wheel-digest"] == sha256_file(Path(artifact.wheel_uri))
    # ... and the bundle whose locked set it installs (the one the tests ran in)
    assert labels["org.prefect-delivery.bundle-digest"] == artifact.bundle_digest
    assert sha256_file(Path(artifact.bundle_uri)) == artifact.bundle_digest
    assert built_image.commit in Path(artifact.wheel_uri).name


def test_built_once_per_commit_and_build_logs_reach_the_prefect_run(
    image_repo, state_dir, image_registry, docker_client
):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker
    from prefect.runtime import flow_run

    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.tasks.build import build

    sha = commit_release(image_repo, "3.1.0")
    store = ArtifactStore(root=str(state_dir / "artifacts"), registry=image_registry)
    co = checkout_commit(image_repo, sha)

    @flow(name="test-image-build")
    def build_flow():
        return flow_run.get_id(), build(co, store)

    run_id, first = build_flow()
    APILogWorker.drain_all(timeout=30)
    # logs travel in batches: on a loaded machine the last ones land a few seconds later
    text, deadline = "", time.monotonic() + 30
    while "Successfully tagged" not in text and time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200
            )
        text = "\n".join(log.message for log in logs)
        time.sleep(0.5)
    assert "docker build: Step 1/" in text and "Successfully tagged" in text
    assert f"digest {first.digest}" in text

    # Build once: the registry has <service>:<sha>, so a second build reuses its digest and
    # does not build again (the local image, removed here, does not come back).
    docker_client.images.remove(first.artifact.filename, force=True)
    second = build.fn(co, store)
    assert second.digest == first.digest and second.artifact == first.artifact
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(first.artifact.filename)


# ---------------------------------------------------------------------------- bad input
def test_missing_dockerfile(image_repo, state_dir, image_registry):
    (Path(image_repo.path) / "Dockerfile").unlink()
    sha = commit_release(image_repo, "3.2.0")
    with pytest.raises(ConfigError) as err:
        build_with(image_repo, sha, state_dir, image_registry)
    message = str(err.value)
    assert "[build].dockerfile" in message and "'Dockerfile' not found" in message
    assert "Fix:" in message and "examples/hello-service/Dockerfile" in message


def test_a_failing_build_step_is_a_verdict_with_the_build_output(
    image_repo, state_dir, image_registry, docker_client
):
    dockerfile = Path(image_repo.path) / "Dockerfile"
    dockerfile.write_text(
        dockerfile.read_text().replace(
            "ENV PYTHONUNBUFFERED", "RUN echo 'compiling assets' && exit 7\nENV PYTHONUNBUFFERED"
        )
    )
    sha = commit_release(image_repo, "3.3.0")
    with removing_new_untagged_images(docker_client), pytest.raises(GateFailed) as err:
        build_with(image_repo, sha, state_dir, image_registry)
    assert err.value.gate == "build" and not is_retryable(err.value)
    message = str(err.value)
    assert "exit 7" in message and "returned a non-zero code: 7" in message
    assert "compiling assets" in message


def test_a_base_image_that_does_not_exist(image_repo, state_dir, image_registry):
    bad = image_registry.model_copy(
        update={"build_args": {"BASE_IMAGE": f"{REGISTRY}/prefect-delivery/no-such-base:1"}}
    )
    sha = commit_release(image_repo, "3.4.0")
    with pytest.raises(ConfigError) as err:
        build_with(image_repo, sha, state_dir, bad)
    message = str(err.value)
    assert message.startswith("base image:") and "no-such-base:1" in message
    assert "build_args" in message


def test_a_registry_that_is_down_is_a_retryable_fault(image_repo, state_dir, image_registry):
    from support import free_port

    down = image_registry.model_copy(update={"address": f"127.0.0.1:{free_port()}"})
    sha = commit_release(image_repo, "3.5.0")
    with pytest.raises(InfrastructureError) as err:
        build_with(image_repo, sha, state_dir, down)
    assert is_retryable(err.value)
    assert f"registry {down.address} did not answer" in str(err.value)
    assert "connection refused" in str(err.value)


def test_a_registry_that_refuses_the_push(image_repo, state_dir, image_registry):
    readonly = LocalRegistry(readonly=True).start()
    try:
        target = image_registry.model_copy(update={"address": readonly.address})
        sha = commit_release(image_repo, "3.6.0")
        with pytest.raises(ConfigError) as err:
            build_with(image_repo, sha, state_dir, target)
    finally:
        readonly.stop()
    message = str(err.value)
    assert f"ImageRegistry {readonly.address}" in message
    assert "refused pushing" in message and "405" in message and "read-only" in message


def test_latest_is_refused_in_the_manifest(image_repo, state_dir, image_registry):
    manifest = Path(image_repo.path) / "delivery.toml"
    manifest.write_text(
        manifest.read_text().replace('kind = "image"', 'kind = "image"\nimage_tag = "latest"')
    )
    sha = commit_release(image_repo, "3.7.0")
    with pytest.raises(ConfigError) as err:
        checkout_commit(image_repo, sha)
    assert "build.image_tag = 'latest'" in str(err.value) and "full commit SHA" in str(err.value)


# ---------------------------------------------------------------------------- credentials
@pytest.fixture(scope="module")
def auth_registry():
    registry = LocalRegistry(users={"alice": PASSWORD}).start()
    yield registry
    registry.stop()


def credentials(address: str, password: str):
    from prefect_docker.credentials import DockerRegistryCredentials

    return DockerRegistryCredentials(username="alice", password=password, registry_url=address)


def test_registry_with_a_password(
    image_repo,
    state_dir,
    image_registry,
    auth_registry,
    scope,
    docker_client,
    caplog,
    monkeypatch,
):
    import httpx

    from prefect_delivery.blocks.targets.docker import DockerTarget

    # docker-py would read (and `docker login` would write) the config here: it must stay empty
    docker_config = short_tmpdir("pd-dockercfg-")
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    home_config = Path.home() / ".docker" / "config.json"
    home_before = home_config.read_bytes() if home_config.exists() else None
    caplog.set_level(logging.DEBUG)
    address = auth_registry.address
    # The registry really asks for a password (plain HTTP on loopback).
    assert httpx.get(f"http://{address}/v2/").status_code == 401

    sha = commit_release(image_repo, "3.8.0")
    wrong = image_registry.model_copy(
        update={"address": address, "credentials": credentials(address, WRONG)}
    )
    with pytest.raises(ConfigError) as err:
        build_with(image_repo, sha, state_dir, wrong)
    message = str(err.value)
    assert message.startswith(f"ImageRegistry {address} credentials:")
    assert "refused the login" in message and "401 Unauthorized" in message
    assert "DockerRegistryCredentials" in message
    assert not is_retryable(err.value)

    anonymous = image_registry.model_copy(update={"address": address})
    with pytest.raises(ConfigError, match="asks for a login .* has no credentials"):
        build_with(image_repo, sha, state_dir, anonymous)

    right = image_registry.model_copy(
        update={"address": address, "credentials": credentials(address, PASSWORD)}
    )
    release = build_with(image_repo, sha, state_dir, right)
    path = f"{image_registry.namespace}/hello-service"
    assert registry_digest(address, path, sha, auth=("alice", PASSWORD)) == release.digest

    # The target pulls with the same credentials, by digest, and only with them.
    docker_client.images.remove(release.artifact.uri, force=True)
    with pytest.raises(ConfigError, match="asks for a login"):
        DockerTarget(scope=scope).prepare(release)
    target = DockerTarget(scope=scope, registry=right)
    instance = target.start(release, "auth", "blue")
    try:
        assert target.inspect(instance)["image"] == release.artifact.uri
    finally:
        target.stop(instance)
        docker_client.images.remove(release.artifact.uri, force=True)

    # No credential on disk, in a log record or in an error message.
    assert list(docker_config.iterdir()) == []
    assert (home_config.read_bytes() if home_config.exists() else None) == home_before
    for secret in (PASSWORD, WRONG):
        assert secret not in message
        assert secret not in caplog.text
