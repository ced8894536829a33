"""Ephemeral PostgreSQL in a container (docker-py), for machines without local binaries.

Same interface as :class:`migrations_lab.postgres.LocalPostgres`. The container uses host
networking and listens on 127.0.0.1 only, on a free port; its superuser password is random
per run (a throwaway credential of a throwaway server, passed as ``POSTGRES_PASSWORD`` as the
image requires). The image is configurable: ``image=``, else the environment variable
``MIGRATIONS_LAB_PG_IMAGE`` (read when the config is made), else ``postgres:16``. Any image
that follows the official postgres image's contract works (``POSTGRES_USER`` /
``POSTGRES_PASSWORD`` / ``POSTGRES_DB`` / ``POSTGRES_INITDB_ARGS``, command
``postgres -c key=value ...``), e.g. the one ``.ci/docker/postgres-image.sh`` builds without
Docker Hub, ``127.0.0.1:5000/prefect-delivery/postgres:15``. The image is pulled only when
``pull=True`` and it is not present locally.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Any

from pydantic import BaseModel, Field

from prefect_delivery.migrations_lab.errors import LabConfigError, PostgresStartError
from prefect_delivery.migrations_lab.postgres import (
    FAST_SETTINGS,
    SUPERUSER,
    PostgresCluster,
    free_port,
)

LABEL = "migrations_lab"
#: Environment variable naming the default image; unset or empty: :data:`DEFAULT_IMAGE`.
IMAGE_ENV = "MIGRATIONS_LAB_PG_IMAGE"
DEFAULT_IMAGE = "postgres:16"


def default_image() -> str:
    """``$MIGRATIONS_LAB_PG_IMAGE`` when set and not empty, else ``postgres:16``."""
    return os.environ.get(IMAGE_ENV, "").strip() or DEFAULT_IMAGE


class DockerPostgresConfig(BaseModel):
    """What the container provider needs; validated at the edge."""

    image: str = Field(default_factory=default_image, min_length=1)
    pull: bool = False
    port: int | None = Field(default=None, ge=1024, le=65535)
    settings: dict[str, str] = Field(default_factory=dict)
    start_timeout_s: float = Field(default=60.0, gt=0)
    name_prefix: str = "migrations-lab-"


def container_spec(config: DockerPostgresConfig, *, port: int, password: str) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.run`` (pure; unit-tested)."""
    settings = {**FAST_SETTINGS, **config.settings, "port": str(port)}
    settings["listen_addresses"] = "127.0.0.1"  # host networking: never expose beyond loopback
    command = ["postgres"]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    return {
        "image": config.image,
        "command": command,
        "detach": True,
        "network_mode": "host",
        "name": f"{config.name_prefix}{secrets.token_hex(4)}",
        "labels": {LABEL: "1"},
        "environment": {
            "POSTGRES_USER": SUPERUSER,
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DB": "postgres",
            "POSTGRES_INITDB_ARGS": "--no-sync",
        },
    }


class DockerPostgres(PostgresCluster):
    """A cluster in a container through docker-py."""

    kind = "docker"

    def __init__(self, config: DockerPostgresConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = config or DockerPostgresConfig(**options)
        self.container: Any = None
        self._client: Any = None

    def _log_hint(self) -> str:
        return f"run `docker logs {self.container.name}`" if self.container else "check dockerd"

    def _start_server(self) -> None:
        try:
            import docker
            from docker.errors import DockerException, ImageNotFound
        except ImportError:
            raise LabConfigError(
                "docker provider", "needs the `docker` Python package.", "pip install docker"
            ) from None
        try:
            self._client = docker.from_env()
            self._client.ping()
        except DockerException as exc:
            raise PostgresStartError(
                "docker provider",
                f"cannot reach the Docker engine ({type(exc).__name__}).",
                "start dockerd / set DOCKER_HOST, or use --provider local",
            ) from None
        try:
            self._client.images.get(self.config.image)
        except ImageNotFound:
            if not self.config.pull:
                raise PostgresStartError(
                    f"docker image {self.config.image!r}",
                    "is not present locally and pulling is off.",
                    f"docker pull {self.config.image} (or --pull / pull=True), or use "
                    "--provider local",
                ) from None
            self._client.images.pull(self.config.image)
        self.port = self.config.port or free_port()
        spec = container_spec(self.config, port=self.port, password=self._password)
        try:
            self.container = self._client.containers.run(**spec)
        except DockerException as exc:
            raise PostgresStartError(
                f"docker image {self.config.image!r}",
                f"the container did not start ({type(exc).__name__}).",
                "check `docker ps -a` and the image name",
            ) from None

    def _wait_ready(self, timeout_s: float | None = None) -> None:
        super()._wait_ready(timeout_s or self.config.start_timeout_s)

    def _check_alive(self) -> None:
        if self.container is None:
            return
        self.container.reload()
        if self.container.status in ("exited", "dead"):
            logs = self.container.logs(tail=8).decode(errors="replace").strip()
            raise PostgresStartError(
                f"container {self.container.name}",
                f"exited while starting: {' | '.join(logs.splitlines())}",
                "check the image and the settings",
            )

    def _stop_server(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):
                # v=True: also the anonymous volume an image's VOLUME (the official
                # image's PGDATA) gave the container; it would outlive it otherwise
                self.container.remove(force=True, v=True)
            self.container = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
