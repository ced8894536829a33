"""Helpers for the container-path tests: the local engine and registry, a registry with a
password, and clean-up of everything a test session pushed or started.

Everything stays on 127.0.0.1: the engine runs containers with host networking, the registries
listen on loopback ports.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from support import free_port, short_tmpdir

REGISTRY = "127.0.0.1:5000"
WEB_BASE = f"{REGISTRY}/prefect-delivery/python-web:3.11"
REGISTRY_BIN = "/usr/bin/docker-registry"
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)
SETUP = "run .ci/docker/up.sh (dockerd without bridge, registry on 127.0.0.1:5000, base images)"


def docker_client_or_skip():
    """A docker-py client of the local engine, or a skip that says why and what to run."""
    try:
        import docker
    except ImportError:
        pytest.skip("docker-py (the `docker` package) is not installed")
    try:
        client = docker.from_env(timeout=300)
        client.info()
    except Exception as exc:  # DockerException, requests' ConnectionError, ...
        pytest.skip(f"`docker info` fails: the Docker engine is not reachable ({exc}); {SETUP}")
    return client


def require_local_registry() -> None:
    try:
        httpx.get(f"http://{REGISTRY}/v2/", timeout=5)
    except httpx.TransportError as exc:
        pytest.fail(f"no registry on {REGISTRY} ({exc}); {SETUP}")


def registry_digest(registry: str, repository_path: str, reference: str, auth=None) -> str | None:
    """The manifest digest the registry itself reports for a tag or digest (None: not there)."""
    response = httpx.get(
        f"http://{registry}/v2/{repository_path}/manifests/{reference}",
        headers={"Accept": MANIFEST_TYPES},
        auth=auth,
        timeout=10,
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def delete_manifest(registry: str, repository_path: str, digest: str, auth=None) -> None:
    httpx.delete(
        f"http://{registry}/v2/{repository_path}/manifests/{digest}", auth=auth, timeout=10
    )


def cleanup_namespace(client, namespace: str, registry: str = REGISTRY, auth=None) -> None:
    """Delete what a test session pushed under ``registry/namespace`` and the local images."""
    for image in local_images(client):
        names = list(image.get("RepoTags") or []) + list(image.get("RepoDigests") or [])
        if any(f"/{namespace}/" in n for n in names):  # pushed here or to a test registry
            try:
                client.images.remove(image["Id"], force=True)
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
    try:
        catalog = httpx.get(f"http://{registry}/v2/_catalog?n=1000", auth=auth, timeout=10)
        repositories = catalog.json().get("repositories") or []
    except (httpx.HTTPError, ValueError):
        return
    for repo in repositories:
        if not repo.startswith(f"{namespace}/"):
            continue
        tags = httpx.get(f"http://{registry}/v2/{repo}/tags/list", auth=auth, timeout=10)
        for tag in (tags.json().get("tags") or []) if tags.status_code == 200 else []:
            digest = registry_digest(registry, repo, tag, auth)
            if digest:
                delete_manifest(registry, repo, digest, auth)


def local_images(client, all: bool = False) -> list[dict]:  # noqa: A002 - docker's name
    """The engine's image list in one call. Not ``client.images.list()``: it inspects each
    image after listing them, and an image another pytest-xdist worker removed in between
    raises ImageNotFound (a parallel run's teardown error). The list names an untagged image
    ``<none>:<none>``; here it has no tags, as in ``Image.attrs``."""
    images = client.api.images(all=all)
    for image in images:
        for key in ("RepoTags", "RepoDigests"):
            image[key] = [n for n in image.get(key) or [] if not n.startswith("<none>")]
    return images


@contextmanager
def removing_new_untagged_images(client):
    """Remove the untagged images created inside the block (a failed build's cached steps)."""
    before = {image["Id"] for image in local_images(client, all=True)}
    try:
        yield
    finally:
        for image in local_images(client, all=True):
            if image["Id"] not in before and not image.get("RepoTags"):
                try:
                    client.images.remove(image["Id"])
                except Exception:  # noqa: BLE001 - in use or already gone: leave it
                    pass


def remove_containers(client, scope: str) -> int:
    """Remove every container a test session started (they carry its scope label)."""
    removed = 0
    for container in client.containers.list(
        all=True, filters={"label": f"org.prefect-delivery.scope={scope}"}
    ):
        container.remove(force=True)
        removed += 1
    return removed


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for an htpasswd file (the registry accepts bcrypt only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # Python <= 3.12; glibc's libxcrypt does bcrypt
        except ImportError:
            crypt = None
    if crypt is not None:
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))
        if hashed and hashed.startswith("$2"):
            return hashed
    if shutil.which("htpasswd"):
        out = subprocess.run(
            ["htpasswd", "-niB", "x"], input=password, capture_output=True, text=True, check=True
        )
        return out.stdout.strip().split(":", 1)[1]
    pytest.fail("cannot make a bcrypt hash: no crypt module and no htpasswd (apache2-utils)")


class LocalRegistry:
    """A second CNCF distribution registry (Debian's docker-registry) on a free loopback port,
    with its own config: htpasswd auth and/or read-only, storage in a temporary folder."""

    def __init__(self, users: dict[str, str] | None = None, readonly: bool = False):
        self.users = users or {}
        self.readonly = readonly
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.root = short_tmpdir("pd-reg-")
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'data'}",
            "  delete:",
            "    enabled: true",
        ]
        if self.readonly:
            lines += ["  maintenance:", "    readonly:", "      enabled: true"]
        lines += ["http:", f"  addr: {self.address}"]
        if self.users:
            htpasswd = self.root / "htpasswd"
            htpasswd.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in self.users.items()))
            lines += ["auth:", "  htpasswd:", "    realm: pd-test", f"    path: {htpasswd}"]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20) -> LocalRegistry:
        if not os.access(REGISTRY_BIN, os.X_OK):
            pytest.fail(f"{REGISTRY_BIN} is missing; apt-get install docker-registry ({SETUP})")
        cfg = self.root / "config.yml"
        cfg.write_text(self.config())
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        log = open(self.root / "registry.log", "ab")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = (self.root / "registry.log").read_text()[-1500:]
                pytest.fail(f"docker-registry on {self.address} exited: {text}")
            try:
                httpx.get(f"http://{self.address}/v2/", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"docker-registry on {self.address} did not answer in {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def write_dockerfile(repo_path: str, text: str) -> Path:
    path = Path(repo_path) / "Dockerfile"
    path.write_text(text)
    return path


def delivery_cli(*args: str) -> tuple[int, str, str]:
    """The real `delivery` command in its own process, on the session's Prefect server."""
    from support import VENV_BIN

    proc = subprocess.run(
        [str(VENV_BIN / "delivery"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
    )
    return proc.returncode, proc.stdout, proc.stderr
