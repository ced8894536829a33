"""The local container infrastructure that .ci/docker/up.sh prepares.

- a Docker engine without a bridge: every container here runs with host networking;
- python:3.11-slim-bookworm (built by debootstrap, no Docker Hub) that runs Python 3.11 and
  installs a local wheel offline in a Dockerfile build;
- 127.0.0.1:5000/prefect-delivery/python-web:3.11 (the same plus uvicorn and starlette);
- a registry on http://127.0.0.1:5000 that takes a push and gives the image back by digest.

Skipped when the engine does not answer; a missing image or registry is a failure, with the
command that fixes it. All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import io
import socket
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

docker = pytest.importorskip("docker", reason="docker-py (the `docker` package) is not installed")

pytestmark = pytest.mark.docker

REGISTRY = "127.0.0.1:5000"
BASE_IMAGE = "python:3.11-slim-bookworm"
WEB_IMAGE = f"{REGISTRY}/prefect-delivery/python-web:3.11"
PROBE_REPOSITORY = f"{REGISTRY}/prefect-delivery/test-infra-probe"
SETUP = ".ci/docker/up.sh"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=300)
        client.info()
    except Exception as exc:  # DockerException, requests' ConnectionError, ...
        pytest.skip(f"Docker engine not reachable ({type(exc).__name__}: {exc}); run {SETUP}")
    yield client
    client.close()


@pytest.fixture(scope="module", autouse=True)
def _engine(client: docker.DockerClient) -> None:
    """Every test here skips (with the reason) when the engine does not answer."""


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # trust_env=False: no proxy from the environment may see loopback traffic.
    with httpx.Client(trust_env=False, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def registry(http: httpx.Client) -> str:
    try:
        http.get(f"http://{REGISTRY}/v2/")
    except httpx.TransportError as exc:
        pytest.fail(f"no registry on {REGISTRY} ({exc}); run .ci/docker/registry-up.sh")
    return REGISTRY


def require_image(client: docker.DockerClient, name: str, script: str):
    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {name} is missing; run {script}")


def run(client: docker.DockerClient, image: str, *command: str, **kwargs) -> str:
    """Run a container to completion with host networking; its stdout, decoded."""
    out = client.containers.run(image, list(command), network_mode="host", remove=True, **kwargs)
    return out.decode().strip()


def make_wheel(directory: Path, name: str, source: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel (module `name`), written by hand: no build backend."""
    version = "0.0.1"
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {req}\n" for req in requires)
    files = {
        f"{name}/__init__.py": source.encode(),
        f"{dist_info}/METADATA": metadata.encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test_infra\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = io.StringIO()
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.write(f"{path},sha256={digest},{len(data)}\n")
    record.write(f"{dist_info}/RECORD,,\n")
    files[f"{dist_info}/RECORD"] = record.getvalue().encode()
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def build_with_wheel(client: docker.DockerClient, context: Path, base: str, wheel: Path, tag: str):
    """What a service image build does: FROM base, pip install the one wheel, no index.

    network_mode none: the install cannot reach any index, so offline is proven, not assumed.
    """
    (context / "Dockerfile").write_text(
        f"FROM {base}\n"
        f"COPY {wheel.name} /tmp/\n"
        f"RUN pip install --no-index --no-cache-dir /tmp/{wheel.name} && rm /tmp/{wheel.name}\n"
    )
    image, _ = client.images.build(
        path=str(context), tag=tag, network_mode="none", rm=True, forcerm=True
    )
    return image


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_base_image_runs_python_311(client: docker.DockerClient) -> None:
    require_image(client, BASE_IMAGE, ".ci/docker/base-image.sh")

    version = run(client, BASE_IMAGE, "python3", "-c", "import sys; print(sys.version)")

    assert version.startswith("3.11."), version


def test_base_image_has_what_dockerfiles_expect_of_the_official_one(
    client: docker.DockerClient,
) -> None:
    image = require_image(client, BASE_IMAGE, ".ci/docker/base-image.sh")
    config = image.attrs["Config"]
    env = dict(item.split("=", 1) for item in config["Env"])

    assert config["Cmd"] == ["python3"]
    assert env["LANG"] == "C.UTF-8"
    assert "/usr/local/bin" in env["PATH"].split(":")
    # `python` as well as `python3`, pip, venv, and UTF-8 I/O.
    out = run(
        client,
        BASE_IMAGE,
        "sh",
        "-c",
        "python -c 'import sys; print(sys.version_info[:2])'"
        " && pip --version >/dev/null && python3 -m venv /tmp/venv && /tmp/venv/bin/python -c "
        "'import sys; print(sys.stdout.encoding)'",
    )
    assert out.splitlines() == ["(3, 11)", "utf-8"]


def test_base_image_installs_a_local_wheel_offline_in_a_build(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    require_image(client, BASE_IMAGE, ".ci/docker/base-image.sh")
    token = uuid.uuid4().hex
    wheel = make_wheel(tmp_path, "pd_infra_probe", f"VALUE = {token!r}\n")
    image = build_with_wheel(
        client, tmp_path, BASE_IMAGE, wheel, f"prefect-delivery/test-infra-wheel:{token}"
    )
    try:
        code = "import pd_infra_probe; print(pd_infra_probe.VALUE)"
        out = run(client, image.id, "python3", "-c", code)
        assert out == token
    finally:
        client.images.remove(image.id, force=True)


def test_web_image_takes_a_service_wheel_offline_and_serves_on_loopback(
    client: docker.DockerClient, http: httpx.Client, tmp_path: Path
) -> None:
    require_image(client, WEB_IMAGE, ".ci/docker/base-image.sh")
    token = uuid.uuid4().hex
    port = free_loopback_port()
    service = (
        "import uvicorn\n"
        "from starlette.applications import Starlette\n"
        "from starlette.responses import PlainTextResponse\n"
        "from starlette.routing import Route\n"
        "async def ping(request):\n"
        f"    return PlainTextResponse({token!r})\n"
        "app = Starlette(routes=[Route('/ping', ping)])\n"
        "def main(port):\n"
        "    uvicorn.run(app, host='127.0.0.1', port=port, log_level='warning')\n"
    )
    # The service declares its runtime; --no-index only works because python-web has it.
    wheel = make_wheel(tmp_path, "pd_infra_service", service, requires=("uvicorn", "starlette"))
    image = build_with_wheel(
        client, tmp_path, WEB_IMAGE, wheel, f"prefect-delivery/test-infra-service:{token}"
    )
    container = None
    try:
        container = client.containers.run(
            image.id,
            ["python3", "-c", f"import pd_infra_service; pd_infra_service.main({port})"],
            network_mode="host",
            detach=True,
            name=f"pd-test-infra-web-{token[:12]}",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                response = http.get(f"http://127.0.0.1:{port}/ping")
                break
            except httpx.TransportError:
                container.reload()
                if container.status != "running":
                    logs = container.logs().decode(errors="replace")[-2000:]
                    pytest.fail(f"service container exited ({container.status}):\n{logs}")
                if time.monotonic() > deadline:
                    pytest.fail(f"nothing answered on 127.0.0.1:{port} within 60 s")
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.text == token
    finally:
        if container is not None:
            container.remove(force=True)
        client.images.remove(image.id, force=True)


def test_registry_answers_v2(http: httpx.Client, registry: str) -> None:
    response = http.get(f"http://{registry}/v2/")

    assert response.status_code == 200, response.text
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_pushed_image_pulls_back_by_digest(
    client: docker.DockerClient, http: httpx.Client, registry: str, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    # A tiny image of its own, unique content: the push has to upload a new blob.
    (tmp_path / "token.txt").write_text(token)
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY token.txt /token.txt\n")
    image, _ = client.images.build(
        path=str(tmp_path), tag=f"{PROBE_REPOSITORY}:{token}", network_mode="none", rm=True
    )
    built_id = image.id
    digest = None
    try:
        for event in client.images.push(PROBE_REPOSITORY, tag=token, stream=True, decode=True):
            assert "error" not in event, event
            digest = event.get("aux", {}).get("Digest", digest)
        assert digest is not None and digest.startswith("sha256:"), "push reported no digest"

        manifest = http.get(
            f"http://{registry}/v2/prefect-delivery/test-infra-probe/manifests/{digest}",
            headers={"Accept": MANIFEST_TYPES},
        )
        assert manifest.status_code == 200, manifest.text
        assert manifest.headers["Docker-Content-Digest"] == digest

        # Forget it locally, so the pull below has to come from the registry.
        client.images.remove(built_id, force=True)
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(built_id)

        pulled = client.images.pull(f"{PROBE_REPOSITORY}@{digest}")

        assert pulled.id == built_id
        assert f"{PROBE_REPOSITORY}@{digest}" in pulled.attrs["RepoDigests"]
        out = client.containers.create(pulled.id, ["none"], network_mode="host")
        try:
            archive, _ = out.get_archive("/token.txt")
            assert token.encode() in b"".join(archive)
        finally:
            out.remove()
    finally:
        try:
            client.images.remove(built_id, force=True)
        except docker.errors.ImageNotFound:
            pass
        if digest is not None:  # our registry allows deletes; another one may not (405)
            http.delete(
                f"http://{registry}/v2/prefect-delivery/test-infra-probe/manifests/{digest}"
            )
