"""DockerTarget on the real engine, with a real hello-service image pulled from the registry."""

from __future__ import annotations

import time

import httpx
import pytest

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.targets.docker import L_DIGEST, L_ENVIRONMENT, L_SLOT, DockerTarget

pytestmark = pytest.mark.docker


def wait_answer(url: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=1).json()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_start_by_digest_list_by_label_stop(built_image, scope, docker_client):
    target = DockerTarget(scope=scope, health_interval_s=0.5)
    # Forget the image locally: the target must pull it from the registry, by digest.
    docker_client.images.remove(built_image.artifact.uri, force=True)
    instance = target.start(built_image, "t1", "blue", env={"HELLO_TOKEN": "tok-1234567"})
    try:
        body = wait_answer(instance.url + "/version")
        assert body == {"version": "3.0.0", "commit": built_image.commit}

        seen = target.inspect(instance)
        # started by digest, never by tag; the image is the one the registry holds
        assert seen["image"] == built_image.artifact.uri
        assert "@sha256:" in seen["image"] and ":" + built_image.commit not in seen["image"]
        assert built_image.artifact.uri in seen["repo_digests"]
        assert seen["network_mode"] == "host"
        assert seen["memory"] == 256 * 1024 * 1024
        assert seen["nano_cpus"] == 1_000_000_000 and seen["pids_limit"] == 256
        labels = seen["labels"]
        assert labels[L_ENVIRONMENT] == "t1" and labels[L_SLOT] == "blue"
        assert labels[L_DIGEST] == built_image.digest
        # the command is the manifest's, with the port the target chose; secrets only in env
        assert seen["cmd"][-2:] == ["--port", str(instance.port)]
        assert "HELLO_TOKEN=tok-1234567" in seen["env"]
        assert not any("tok-1234567" in part for part in seen["cmd"])

        deadline = time.monotonic() + 20
        while target.inspect(instance)["health"] != "healthy" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert target.inspect(instance)["health"] == "healthy"

        # A re-run (a new block object, same scope) rebuilds the Instance from labels alone.
        again = DockerTarget(scope=scope).list("t1")
        assert [i.id for i in again] == [instance.id]
        assert again[0].alive and again[0].release == built_image
        assert again[0].port == instance.port and again[0].handle == instance.handle
        assert DockerTarget(scope=scope + "x").list("t1") == []
        assert DockerTarget(scope=scope).list("t2") == []
    finally:
        target.stop(instance, timeout_s=5)
    assert target.list("t1") == []
    assert docker_client.containers.list(all=True, filters={"id": instance.handle}) == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(instance.url + "/healthz", timeout=1)
    target.stop(instance)  # already gone: a no-op


def test_an_instance_that_exits_at_start_is_listed_dead_with_its_output(built_image, scope):
    target = DockerTarget(scope=scope)
    instance = target.start(built_image, "t3", "blue", env={"HELLO_FAULT": "crash"})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and target.list("t3")[0].alive:
            time.sleep(0.1)
        assert target.list("t3")[0].alive is False
        log = target.logs(instance)
        assert "fault 'crash' set, exiting at start-up" in log
        assert "[container exited with code 3]" in log
    finally:
        target.stop(instance)
    assert target.list("t3") == []


def test_a_wheel_release_is_refused_with_the_fix(built_image, scope):
    from prefect_delivery.blocks.release import Artifact

    wheel = built_image.model_copy(
        update={"artifact": Artifact(kind="wheel", digest=built_image.digest, uri="/x.whl")}
    )
    with pytest.raises(ConfigError, match="DockerTarget runs images") as err:
        DockerTarget(scope=scope).prepare(wheel)
    assert "ProcessTarget" in str(err.value)


def test_a_tag_is_never_run(built_image, scope):
    from prefect_delivery.blocks.release import Artifact

    tagged = built_image.model_copy(
        update={
            "artifact": Artifact(
                kind="image", digest=built_image.digest, uri=built_image.artifact.filename
            )
        }
    )
    with pytest.raises(ConfigError, match="never by tag"):
        DockerTarget(scope=scope).prepare(tagged)
