"""ImageRegistry: where service images are built (a Docker engine) and pushed (a registry).

The block holds configuration only; the credentials live in prefect-docker's
``DockerRegistryCredentials`` block (optional, for a registry that needs a login) and the Docker
engine is prefect-docker's ``DockerHost`` block. Everything goes through docker-py: a login is
kept in the client's memory for the duration of one operation (never ``docker login``, never
``~/.docker/config.json``), and the password is only ever handed to the Docker engine's API.

Registry faults are sorted into the pipeline's three kinds (blocks/errors.py) by
:func:`registry_error`: a registry that does not answer is an ``InfrastructureError`` (the stage
tasks retry it), a refused login or a refused push is a ``ConfigError`` (the message names the
block field to fix).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect.blocks.core import Block
from prefect_docker.credentials import DockerRegistryCredentials
from prefect_docker.host import DockerHost
from pydantic import Field, field_validator

from prefect_delivery.blocks.errors import (
    ConfigError,
    DeliveryError,
    GateFailed,
    InfrastructureError,
)
from prefect_delivery.blocks.schema_cache import SchemaOnce
from prefect_delivery.blocks.secrets import reveal

ADDRESS_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
BUILD_ARG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# What a registry (or the engine talking to it) says, sorted by what the pipeline should do.
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|timeout|timed out|connection reset|"
    r"\beof\b|tls handshake|server misbehaving|network is unreachable|no route to host|"
    r"too many requests|deadline exceeded|\b50[234]\b|service unavailable|bad gateway",
    re.I,
)
_UNAUTHORIZED = re.compile(
    r"unauthorized|authentication required|no basic auth credentials|incorrect username|"
    r"\b401\b",
    re.I,
)
_REFUSED = re.compile(
    r"denied|forbidden|\b403\b|\b405\b|method not allowed|unsupported|read-only|readonly",
    re.I,
)
_MISSING = re.compile(r"manifest unknown|not found|\b404\b|does not exist|name unknown", re.I)


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced; used on anything that may reach a log or error."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def registry_error(
    action: str, ref: str, message: str, address: str, credentials: bool
) -> DeliveryError | None:
    """Sort a registry failure into the pipeline's error kinds; None when the thing is missing.

    ``action`` says what was being done ("pushing", "pulling", "looking up"), ``ref`` the image,
    ``message`` what the engine answered (digests are ignored when matching, so a status code
    inside a hex string is never mistaken for one).
    """
    text = DIGEST_RE.sub("sha256:<digest>", message)
    if _UNAUTHORIZED.search(text):
        if credentials:
            return ConfigError(
                f"ImageRegistry {address} credentials",
                f"the registry refused the login while {action} {ref} ({message.strip()}).",
                "fix the username or password in the DockerRegistryCredentials block that the "
                "ImageRegistry block references.",
            )
        return ConfigError(
            f"ImageRegistry {address} credentials",
            f"the registry asks for a login while {action} {ref} ({message.strip()}), and the "
            "ImageRegistry block has no credentials.",
            "create a DockerRegistryCredentials block and reference it from the ImageRegistry "
            "block's `credentials` field.",
        )
    if _UNREACHABLE.search(text):
        return InfrastructureError(
            f"registry {address} did not answer while {action} {ref}: {message.strip()}. "
            "Retried; if it stays down, start it (on this machine: .ci/docker/registry-up.sh) "
            "or fix the ImageRegistry block's address."
        )
    if _MISSING.search(text):
        return None
    if _REFUSED.search(text):
        return ConfigError(
            f"ImageRegistry {address}",
            f"the registry refused {action} {ref} ({message.strip()}).",
            "use a registry (or credentials) that may push to this repository: a read-only "
            "registry or a pull-through mirror cannot take releases.",
        )
    return InfrastructureError(f"registry {address}: {action} {ref} failed: {message.strip()}")


class ImageRegistry(SchemaOnce, Block):
    """A Docker engine that builds service images and the registry they are pushed to."""

    _block_type_name = "Image Registry"
    _block_type_slug = "delivery-image-registry"
    _description = (
        "Where the pipeline builds service images (a Docker engine: DockerHost block) and pushes "
        "them, tagged with the full commit SHA and pinned by digest (a registry, with optional "
        "DockerRegistryCredentials)."
    )

    address: str = Field(
        default="127.0.0.1:5000",
        description="Registry host[:port], without scheme; e.g. 127.0.0.1:5000, ghcr.io, "
        "docker.io.",
    )
    namespace: str = Field(
        default="",
        description="Path under the registry: images are <address>/<namespace>/<service>.",
    )
    credentials: DockerRegistryCredentials | None = Field(
        default=None, description="Login for the registry; none for an open registry."
    )
    docker_host: DockerHost = Field(
        default_factory=DockerHost, description="The Docker engine that builds and pushes."
    )
    build_args: dict[str, str] = Field(
        default_factory=dict,
        description="Build args of every image build, e.g. BASE_IMAGE to build FROM a mirror. "
        "Never secrets: build args are recorded in the image's history.",
    )
    build_network: str = Field(
        default="host",
        description="Network of the build's RUN steps: 'host' (an engine without a bridge) or "
        "'none' (offline builds), or 'default'.",
    )
    build_timeout_s: int = Field(default=900, ge=30, description="Longest an image build runs.")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not ADDRESS_RE.match(value):
            raise ValueError(
                f"registry address {value!r} must be host[:port] in lowercase without scheme "
                "or path, e.g. '127.0.0.1:5000' or 'ghcr.io' (put paths in `namespace`)"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        value = value.strip("/")
        if value and not NAMESPACE_RE.match(value):
            raise ValueError(
                f"namespace {value!r} must be lowercase path components (letters, digits, "
                "'.', '_', '-') separated by '/', e.g. 'my-team'"
            )
        return value

    @field_validator("build_args")
    @classmethod
    def _build_args(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not BUILD_ARG_RE.match(key):
                raise ValueError(f"build arg name {key!r} is not a valid ARG name")
        return value

    # ------------------------------------------------------------------ names
    def repository(self, service: str) -> str:
        """``<address>/<namespace>/<service>``, the repository of a service's images."""
        return "/".join(p for p in (self.address, self.namespace, service) if p)

    def tag_ref(self, service: str, commit: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise ConfigError(
                "image tag",
                f"{commit!r} is not a full commit SHA (40 hex digits); images are tagged only "
                "with the commit they were built from, never 'latest' or a short SHA.",
                "pass the full SHA (`git rev-parse <ref>`)",
            )
        return f"{self.repository(service)}:{commit}"

    # ------------------------------------------------------------------ engine
    def auth_config(self) -> dict[str, str] | None:
        if self.credentials is None:
            return None
        return {
            "username": self.credentials.username,
            "password": reveal(self.credentials.password),
        }

    def _secrets(self) -> list[str]:
        return [reveal(self.credentials.password)] if self.credentials else []

    def error(self, action: str, ref: str, exc: BaseException) -> DeliveryError | None:
        message = redact(_explain(exc), self._secrets())
        return registry_error(action, ref, message, self.address, self.credentials is not None)

    @contextmanager
    def client(self, login: bool = True) -> Iterator[Any]:
        """A docker-py client of the DockerHost, logged in to the registry (in memory only)."""
        client = open_docker(self.docker_host)
        try:
            if login and self.credentials is not None:
                self.login(client)
            yield client
        finally:
            client.close()

    def login(self, client: Any) -> None:
        """Check the credentials against the registry; docker-py keeps them in memory only."""
        import docker

        assert self.credentials is not None
        try:
            client.login(
                username=self.credentials.username,
                password=reveal(self.credentials.password),
                registry=self.address,
                reauth=True,
            )
        except docker.errors.APIError as exc:
            raise (
                self.error("logging in to", self.address, exc)
                or ConfigError(
                    f"ImageRegistry {self.address} credentials",
                    f"login refused: {redact(_explain(exc), self._secrets())}",
                    "fix the DockerRegistryCredentials block.",
                )
            ) from None

    def lookup(self, client: Any, ref: str) -> str | None:
        """The manifest digest the registry holds for ``ref`` (a tag), or None if it has none."""
        import docker

        try:
            found = client.api.inspect_distribution(ref, auth_config=self.auth_config())
        except docker.errors.APIError as exc:
            error = self.error("looking up", ref, exc)
            if error is None:
                return None
            raise error from None
        return found["Descriptor"]["digest"]

    def build(
        self,
        client: Any,
        context: Path,
        dockerfile: str,
        tag: str,
        buildargs: dict[str, str],
        labels: dict[str, str],
        log: Callable[[str], None],
    ) -> str:
        """Build ``context`` into ``tag``, streaming the build output to ``log``; the image id.

        A failing step is the release's fault (GateFailed); a base image that is not there is
        bad configuration (ConfigError); an engine or registry that does not answer is
        infrastructure.
        """
        import docker

        tail: deque[str] = deque(maxlen=12)
        step = ""
        image_id = None
        args = {**self.build_args, **buildargs}
        try:
            stream = client.api.build(
                path=str(context),
                dockerfile=dockerfile,
                tag=tag,
                buildargs=args,
                labels=labels,
                rm=True,
                forcerm=True,
                pull=False,
                network_mode=self.build_network,
                timeout=self.build_timeout_s,
                decode=True,
            )
            for chunk in stream:
                for line in ANSI_RE.sub("", str(chunk.get("stream", ""))).splitlines():
                    if line.strip():
                        log(line.rstrip())
                        tail.append(line.rstrip())
                        if line.startswith("Step "):
                            step = line.split(":", 1)[-1].strip()
                if "aux" in chunk and isinstance(chunk["aux"], dict):
                    image_id = chunk["aux"].get("ID", image_id)
                if "error" in chunk:
                    raise _BuildFailed(str(chunk["error"]))
        except _BuildFailed as exc:
            raise self._build_error(str(exc), step, tail, tag, args) from None
        except docker.errors.APIError as exc:
            raise self._build_error(_explain(exc), step, tail, tag, args) from None
        except docker.errors.DockerException as exc:
            raise InfrastructureError(f"the Docker engine failed building {tag}: {exc}") from None
        if image_id is None:
            image_id = client.images.get(tag).id
        return image_id

    def _build_error(
        self, message: str, step: str, tail: deque[str], tag: str, args: dict[str, str]
    ) -> DeliveryError:
        message = redact(message, self._secrets()).strip()
        text = DIGEST_RE.sub("sha256:<digest>", message)
        if step.upper().startswith("FROM "):
            base = f"`{step}`" + (
                f" with BASE_IMAGE={args['BASE_IMAGE']}" if "BASE_IMAGE" in args else ""
            )
            if _UNREACHABLE.search(text):
                return InfrastructureError(
                    f"the base image of {tag} ({base}) could not be pulled, its registry did "
                    f"not answer: {message}. Retried; if it stays down, start it or build FROM "
                    "an image the engine has."
                )
            return ConfigError(
                "base image",
                f"{base} cannot be used to build {tag}: {message.rstrip('.')}.",
                "make the base image available to the Docker engine, or set BASE_IMAGE in the "
                "ImageRegistry block's build_args (on this machine: "
                "127.0.0.1:5000/prefect-delivery/python-web:3.11, see .ci/docker/base-image.sh).",
            )
        if _UNREACHABLE.search(text) and "returned a non-zero code" not in message:
            return InfrastructureError(f"image build of {tag} hit a fault: {message}")
        output = "\n".join(tail)
        return GateFailed(
            "build", f"image build of {tag} failed at `{step or 'start'}`: {message}\n{output}"
        )

    def push(self, client: Any, repository: str, tag: str, log: Callable[[str], None]) -> str:
        """Push ``repository:tag``; returns the registry's manifest digest (from RepoDigests)."""
        import docker

        ref = f"{repository}:{tag}"
        reported = None
        try:
            for event in client.api.push(
                repository, tag=tag, stream=True, decode=True, auth_config=self.auth_config()
            ):
                if "error" in event:
                    raise _BuildFailed(str(event["error"]))
                aux = event.get("aux")
                if isinstance(aux, dict) and aux.get("Digest"):
                    reported = aux["Digest"]
                status = event.get("status", "")
                if status and "progressDetail" in event and event.get("progress"):
                    continue
                if status in ("Pushed", "Layer already exists", "Mounted from"):
                    log(f"push {event.get('id', '')}: {status}")
        except (_BuildFailed, docker.errors.APIError) as exc:
            error = self.error("pushing", ref, exc)
            if error is None:  # the registry has no such repository and will not create it
                error = ConfigError(
                    f"ImageRegistry {self.address}",
                    f"the registry refused pushing {ref}: {redact(_explain(exc), self._secrets())}",
                    "create the repository in the registry, or fix the ImageRegistry block's "
                    "address and namespace.",
                )
            raise error from None
        image = client.images.get(ref)
        digests = [d for d in image.attrs.get("RepoDigests", []) if d.startswith(repository + "@")]
        if not digests:
            raise InfrastructureError(f"pushed {ref}, but the engine recorded no repo digest")
        digest = digests[0].split("@", 1)[1]
        if reported and reported != digest and f"{repository}@{reported}" in digests:
            digest = reported
        log(f"pushed {ref} as {repository}@{digest}")
        return digest


class _BuildFailed(Exception):
    pass


def _explain(exc: BaseException) -> str:
    """The useful part of a docker-py error: the engine's explanation, else the text."""
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation)
    return str(exc)


def open_docker(host: DockerHost) -> Any:
    """A client of the engine ``host`` names; an engine that does not answer is infrastructure."""
    import docker

    try:
        client = host.get_client()  # version "auto" asks the engine already
        if host.version != "auto":
            client.ping()
    except docker.errors.DockerException as exc:
        where = (
            host.base_url or "the environment's DOCKER_HOST (default unix:///var/run/docker.sock)"
        )
        raise InfrastructureError(
            f"the Docker engine at {where} does not answer ({exc}). Start it (on this machine: "
            ".ci/docker/dockerd-up.sh) or fix the DockerHost block's base_url."
        ) from None
    return client
