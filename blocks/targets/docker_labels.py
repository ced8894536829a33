"""The labels of a DockerTarget's containers, and the instances they describe: no Prefect.

Every container of ours carries its scope, service, environment, slot and release (the
Release itself as JSON, which holds no secret), so ``list_instances`` rebuilds every Instance
from the engine alone: the DockerTarget Block does, and so do the commands that must answer at
once (they make a docker-py client from the snapshot's engine address).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from prefect_delivery.blocks.release import Instance, Release

LABEL_PREFIX = "org.prefect-delivery"

#: Label keys every container of ours carries.
L_MANAGED = f"{LABEL_PREFIX}.managed"
L_SCOPE = f"{LABEL_PREFIX}.scope"
L_SERVICE = f"{LABEL_PREFIX}.service"
L_ENVIRONMENT = f"{LABEL_PREFIX}.environment"
L_SLOT = f"{LABEL_PREFIX}.slot"
L_INSTANCE = f"{LABEL_PREFIX}.instance"
L_DIGEST = f"{LABEL_PREFIX}.release.digest"
L_VERSION = f"{LABEL_PREFIX}.release.version"
L_COMMIT = f"{LABEL_PREFIX}.release.commit"
L_RELEASE = f"{LABEL_PREFIX}.release"
L_HOST = f"{LABEL_PREFIX}.host"
L_PORT = f"{LABEL_PREFIX}.port"
L_STARTED = f"{LABEL_PREFIX}.started-at"


def scope_for(state_dir: str) -> str:
    """A short, stable label value for one pipeline installation (its state folder)."""
    return "pd" + hashlib.sha256(state_dir.encode()).hexdigest()[:10]


def container_labels(instance: Instance, scope: str) -> dict[str, str]:
    release = instance.release
    return {
        L_MANAGED: "prefect-delivery",
        L_SCOPE: scope,
        L_SERVICE: instance.service,
        L_ENVIRONMENT: instance.environment,
        L_SLOT: instance.slot,
        L_INSTANCE: instance.id,
        L_DIGEST: release.digest,
        L_VERSION: release.version,
        L_COMMIT: release.commit,
        L_RELEASE: release.model_dump_json(),
        L_HOST: instance.host,
        L_PORT: str(instance.port),
        L_STARTED: instance.started_at.isoformat(),
    }


def instance_from_labels(labels: dict[str, str], handle: str, alive: bool) -> Instance | None:
    """The Instance a container's labels describe; None for labels that are not ours."""
    try:
        return Instance(
            id=labels[L_INSTANCE],
            environment=labels[L_ENVIRONMENT],
            service=labels[L_SERVICE],
            slot=labels[L_SLOT],
            release=Release.model_validate_json(labels[L_RELEASE]),
            host=labels[L_HOST],
            port=int(labels[L_PORT]),
            started_at=datetime.fromisoformat(labels[L_STARTED]),
            handle=handle,
            alive=alive,
        )
    except (KeyError, ValueError, ValidationError):
        return None


def label_filters(scope: str, environment: str | None = None) -> dict[str, list[str]]:
    labels = [f"{L_SCOPE}={scope}", f"{L_MANAGED}=prefect-delivery"]
    if environment is not None:
        labels.append(f"{L_ENVIRONMENT}={environment}")
    return {"label": labels}


def instances_of(containers: list[Any]) -> list[Instance]:
    result = []
    for container in containers:
        instance = instance_from_labels(
            container.labels, container.id, container.status == "running"
        )
        if instance is not None:
            result.append(instance)
    return sorted(result, key=lambda i: (i.started_at, i.id))


def _client(target: dict[str, Any]) -> Any:
    import docker

    base_url = (target.get("docker_host") or {}).get("base_url")
    return docker.DockerClient(base_url=base_url) if base_url else docker.from_env()


def stop_container(target: dict[str, Any], instance: Instance, timeout_s: float = 5.0) -> None:
    import docker

    client = _client(target)
    try:
        container = client.containers.get(instance.handle)
        if container.status == "running":
            container.stop(timeout=max(1, int(round(timeout_s))))
        container.remove(force=True)
    except docker.errors.NotFound:
        return
    finally:
        client.close()


def list_instances(target: dict[str, Any], environment: str) -> list[Instance]:
    """The instances a DockerTarget (as its snapshot dict says) runs for ``environment``."""
    client = _client(target)
    try:
        containers = client.containers.list(
            all=True, filters=label_filters(target["scope"], environment)
        )
    finally:
        client.close()
    return instances_of(containers)
