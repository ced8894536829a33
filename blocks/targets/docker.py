"""DockerTarget: instances of a release as containers, started by image digest, never by tag.

The Target protocol (blocks/targets/__init__.py), like ProcessTarget, on a Docker engine
(prefect-docker's ``DockerHost`` block, docker-py). Each instance is one container:

- image ``<repository>@sha256:...`` (the release's digest), pulled from the registry when the
  engine does not have it (``ImageRegistry`` credentials, in memory only);
- ``network_mode="host"``: it listens on a loopback port the target leases on the host
  (blocks/ports.py: no other starting instance gets it, and the launch confirms the container
  itself answers there), given to the manifest's command through its ``{host}``/``{port}``
  placeholders, so the environment's router reaches it on 127.0.0.1 (no bridge needed);
- a Docker HEALTHCHECK on the manifest's health path, memory/CPU/pids limits, no restart policy
  (a release that dies stays dead and is judged, not hidden);
- labels that say scope, service, environment, slot and release (digest, version, commit, and the
  Release itself as JSON, which holds no secret), so ``list`` rebuilds every Instance from the
  engine alone and a re-run can reconcile;
- secrets reach it only through its environment, never its command line.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from prefect.blocks.core import Block
from prefect_docker.host import DockerHost
from pydantic import Field, field_validator

from prefect_delivery.blocks.errors import ConfigError, GateFailed, InfrastructureError
from prefect_delivery.blocks.paths import default_state_dir
from prefect_delivery.blocks.ports import (
    describe_pids,
    end_lease,
    lease_port,
    listener_pids,
    pid_namespace,
)
from prefect_delivery.blocks.registry import (
    ImageRegistry,
    open_docker,
    registry_error,
)
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.blocks.schema_cache import SchemaOnce
from prefect_delivery.blocks.targets.docker_labels import (  # noqa: F401 - the label API
    L_COMMIT,
    L_DIGEST,
    L_ENVIRONMENT,
    L_HOST,
    L_INSTANCE,
    L_MANAGED,
    L_PORT,
    L_RELEASE,
    L_SCOPE,
    L_SERVICE,
    L_SLOT,
    L_STARTED,
    L_VERSION,
    container_labels,
    instance_from_labels,
    instances_of,
    label_filters,
    scope_for,
)

MEMORY_RE = re.compile(r"^[1-9][0-9]*[bkmg]?$")
SCOPE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
NS = 1_000_000_000


def health_command(release: Release, host: str, port: int) -> list[str]:
    """Docker HEALTHCHECK test: GET the health path from inside the container (host network)."""
    argv0 = release.run.command[0] if release.run.command else ""
    python = argv0 if PurePosixPath(argv0).name.startswith("python") else "python3"
    url = f"http://{host}:{port}{release.run.health_path}"
    code = (
        "import sys, urllib.request as u\n"
        f"sys.exit(0 if u.urlopen({url!r}, timeout=2).status == 200 else 1)"
    )
    return ["CMD", python, "-c", code]


class DockerTarget(SchemaOnce, Block):
    """Runs each instance of a release as a container, by image digest, with host networking."""

    _block_type_name = "Docker Target"
    _block_type_slug = "docker-target"
    _description = (
        "Runs each instance of a release (an image pinned by digest) as a container on a Docker "
        "engine, with host networking on a free loopback port, a health check, resource limits "
        "and labels the pipeline reconciles from."
    )

    docker_host: DockerHost = Field(
        default_factory=DockerHost, description="The Docker engine that runs the containers."
    )
    registry: ImageRegistry | None = Field(
        default=None,
        description="Credentials to pull with (its DockerRegistryCredentials); none for an open "
        "registry.",
    )
    host: str = Field(default="127.0.0.1", description="Loopback address instances bind to.")
    scope: str = Field(
        default_factory=lambda: scope_for(default_state_dir()),
        description="Label that keeps this pipeline's containers apart from others on the "
        "same engine (default: derived from the state folder).",
    )
    memory: str = Field(
        default="256m", description="Memory limit per container (Docker syntax: 256m, 1g)."
    )
    cpus: float = Field(default=1.0, gt=0, le=64, description="CPU limit per container.")
    pids_limit: int = Field(default=256, ge=16, description="Process limit per container.")
    health_interval_s: float = Field(
        default=2.0, gt=0, le=60, description="Interval of the container's Docker health check."
    )

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        value = value.strip().lower()
        if not MEMORY_RE.match(value):
            raise ValueError(f"memory {value!r} must look like '256m', '1g' or a byte count")
        return value

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        if not SCOPE_RE.match(value):
            raise ValueError(f"scope {value!r} must be lowercase letters, digits, '.', '_', '-'")
        return value

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if not value.startswith("127."):
            raise ValueError(
                f"host {value!r}: instances run with host networking and must bind a loopback "
                "address (e.g. 127.0.0.1); the router is the only way in"
            )
        return value

    # ----------------------------------------------------------------- helpers
    def _client(self) -> Any:
        return open_docker(self.docker_host)

    def _auth(self) -> dict[str, str] | None:
        return self.registry.auth_config() if self.registry else None

    def _pull_error(self, release: Release, exc: BaseException) -> Exception:
        ref = release.artifact.uri
        address = ref.split("/", 1)[0]
        if self.registry is not None:
            error = self.registry.error("pulling", ref, exc)
        else:
            message = str(getattr(exc, "explanation", None) or exc)
            error = registry_error("pulling", ref, message, address, False)
        if error is not None:
            return error
        return GateFailed(
            "artifact",
            f"image {ref} of release {release.label} is not in the registry {address} "
            "(manifest unknown): the release cannot be started from it. Fix: deliver the commit "
            "again so it is built and pushed, or push the image back; check that the "
            "ImageRegistry address did not change since it was built.",
        )

    def _filters(self, environment: str | None = None) -> dict[str, list[str]]:
        return label_filters(self.scope, environment)

    def _name(self, instance_id: str) -> str:
        return f"{self.scope}-{instance_id}"

    # ----------------------------------------------------------------- Target
    def prepare(self, release: Release) -> None:
        """Make the image available to the engine by digest (pull it when missing)."""
        import docker

        if release.artifact.kind != "image":
            raise ConfigError(
                "environment target",
                f"DockerTarget runs images, but release {release.label} is a "
                f"{release.artifact.kind}.",
                "build the service as an image ([build].kind = 'image' and a Dockerfile), or "
                "use a ProcessTarget for wheels.",
            )
        ref = release.artifact.uri
        if "@sha256:" not in ref or not ref.endswith(release.digest):
            raise ConfigError(
                "release artifact",
                f"{ref!r} does not pin the digest {release.digest}; instances start by digest "
                "only, never by tag.",
                "rebuild the release with the container build path.",
            )
        client = self._client()
        try:
            try:
                client.images.get(ref)
                return
            except docker.errors.ImageNotFound:
                pass
            try:
                client.images.pull(ref, auth_config=self._auth())
            except docker.errors.APIError as exc:
                raise self._pull_error(release, exc) from None
        finally:
            client.close()

    def _argv(self, release: Release, port: int) -> list[str]:
        return [part.format(host=self.host, port=port) for part in release.run.command]

    def start(
        self, release: Release, environment: str, slot: str, env: dict[str, str] | None = None
    ) -> Instance:
        import docker

        self.prepare(release)
        instance = Instance.new(environment, release, slot, self.host, 0, "")
        instance_id = instance.id
        # the port is ours until confirm() or stop() (blocks/ports.py)
        port = instance.port = lease_port(self.host, instance_id).port
        environment_vars = {**instance.variables(), **(env or {})}
        client = self._client()
        try:
            container = client.containers.run(
                release.artifact.uri,
                command=self._argv(release, port),
                name=self._name(instance_id),
                detach=True,
                network_mode="host",
                environment=environment_vars,
                labels=container_labels(instance, self.scope),
                healthcheck={
                    "test": health_command(release, self.host, port),
                    "interval": int(self.health_interval_s * NS),
                    "timeout": 3 * NS,
                    "retries": 3,
                    "start_period": int(release.run.startup_timeout_s * NS),
                },
                mem_limit=self.memory,
                nano_cpus=int(self.cpus * NS),
                pids_limit=self.pids_limit,
                restart_policy={"Name": "no"},
                init=True,
            )
        except docker.errors.ImageNotFound as exc:
            end_lease(instance_id)
            raise self._pull_error(release, exc) from None
        except docker.errors.APIError as exc:
            end_lease(instance_id)
            raise InfrastructureError(
                f"the Docker engine did not start {release.artifact.uri} for {instance_id}: "
                f"{getattr(exc, 'explanation', None) or exc}"
            ) from None
        finally:
            client.close()
        instance.handle = container.id
        return instance

    def confirm(self, instance: Instance) -> None:
        """The container itself listens on its port (the listening socket's process is in
        the container's PID namespace); then the port's lease ends. Raises, naming what
        holds the port, when another program answers there."""
        client = self._client()
        try:
            container = client.containers.get(instance.handle)
            pid = int(container.attrs.get("State", {}).get("Pid") or 0)
        except Exception as exc:  # noqa: BLE001 - docker-py's errors and a missing container
            raise InfrastructureError(
                f"could not inspect container {instance.handle[:12]} ({instance.id}): {exc}"
            ) from None
        finally:
            client.close()
        holders = listener_pids(instance.port)
        namespace = pid_namespace(pid) if pid else None
        if not namespace or not any(pid_namespace(p) == namespace for p in holders):
            raise InfrastructureError(
                f"port {instance.port} of instance {instance.id} is not its own: "
                f"{describe_pids(holders)}, not container {instance.handle[:12]}"
            )
        end_lease(instance.id)

    def list(self, environment: str) -> list[Instance]:
        client = self._client()
        try:
            containers = client.containers.list(all=True, filters=self._filters(environment))
        finally:
            client.close()
        return instances_of(containers)

    def stop(self, instance: Instance, timeout_s: float = 10.0) -> None:
        import docker

        end_lease(instance.id)
        client = self._client()
        try:
            try:
                container = client.containers.get(instance.handle)
            except docker.errors.NotFound:
                return
            try:
                if container.status == "running":
                    container.stop(timeout=max(1, int(round(timeout_s))))
                container.remove(force=True)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if "removal of container" in str(exc) and "already in progress" in str(exc):
                    return
                raise InfrastructureError(
                    f"could not stop container {instance.handle[:12]} ({instance.id}): {exc}"
                ) from None
        finally:
            client.close()

    def logs(self, instance: Instance, lines: int = 20) -> str:
        import docker

        client = self._client()
        try:
            try:
                container = client.containers.get(instance.handle)
            except docker.errors.NotFound:
                return ""
            text = container.logs(tail=lines).decode(errors="replace").rstrip()
            state = container.attrs.get("State", {})
            if state.get("Status") == "exited":
                text += f"\n[container exited with code {state.get('ExitCode')}"
                text += ", killed: out of memory]" if state.get("OOMKilled") else "]"
            return text
        finally:
            client.close()

    def inspect(self, instance: Instance) -> dict[str, Any]:
        """The engine's view of an instance's container (image, labels, limits, health)."""
        client = self._client()
        try:
            container = client.containers.get(instance.handle)
            return {
                "image": container.attrs["Config"]["Image"],
                "image_id": container.attrs["Image"],
                "repo_digests": client.images.get(container.attrs["Image"]).attrs.get(
                    "RepoDigests", []
                ),
                "labels": dict(container.labels),
                "status": container.status,
                "health": container.attrs.get("State", {}).get("Health", {}).get("Status"),
                "network_mode": container.attrs["HostConfig"]["NetworkMode"],
                "memory": container.attrs["HostConfig"]["Memory"],
                "nano_cpus": container.attrs["HostConfig"]["NanoCpus"],
                "pids_limit": container.attrs["HostConfig"]["PidsLimit"],
                "env": list(container.attrs["Config"].get("Env") or []),
                "cmd": list(container.attrs["Config"].get("Cmd") or []),
            }
        finally:
            client.close()
