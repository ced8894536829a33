"""The domain's nouns: an artifact built once per commit, the release it makes, an instance of it.

These are plain pydantic models (no Prefect) so every layer can pass them around and tests can
build them by hand. A release is identified by its artifact digest: two releases with the same
digest are the same release, wherever they run.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SmokeCheck(BaseModel):
    """A critical endpoint: the path, the status it must answer and the JSON keys it must carry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    status: int = Field(default=200, ge=100, le=599)
    json_keys: list[str] = Field(default_factory=list)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path starting with '/'")
        return value


class RunSpec(BaseModel):
    """How an instance of the release is started and checked (from the service manifest)."""

    model_config = ConfigDict(frozen=True)

    command: list[str] = Field(
        description="argv; '{host}' and '{port}' are filled in, a leading 'python' means "
        "the target's interpreter"
    )
    health_path: str = "/healthz"
    version_path: str | None = Field(
        default=None,
        description="Where the app reports its commit (checked when given); which release "
        "answers is known from the router's identity header either way.",
    )
    startup_timeout_s: float = 20.0
    container_port: int = 8000
    smoke: list[SmokeCheck] = Field(default_factory=list)


class Artifact(BaseModel):
    """One immutable build output: a bundle (the service's wheel and every dependency, locked;
    blocks/bundle.py) pinned by the sha256 of its bundle.json, or an image pinned by digest.
    ``wheel`` is a release built before bundles: the bare wheel, run on the tool's interpreter."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["bundle", "wheel", "image"]
    digest: str = Field(
        description="'sha256:<hex>' of the bundle.json, the wheel file or the image manifest"
    )
    uri: str = Field(
        description="path of the bundle.json (or wheel) in the artifact store, or "
        "'repo@sha256:...'"
    )
    filename: str | None = None
    wheel_uri: str | None = Field(
        default=None,
        description="bundle, image: the service's own wheel (in the artifact store)",
    )
    bundle_uri: str | None = Field(
        default=None, description="image: the bundle.json of the locked set the image installs"
    )
    bundle_digest: str | None = Field(default=None, description="image: that bundle's digest")

    @property
    def short_digest(self) -> str:
        return self.digest.split(":", 1)[-1][:12]


class Release(BaseModel):
    """A service at one commit, built once, with what it takes to run it."""

    model_config = ConfigDict(frozen=True)

    service: str
    version: str
    commit: str = Field(min_length=40, max_length=40)
    artifact: Artifact
    run: RunSpec
    author: str | None = Field(
        default=None, description="The commit's author, 'Name <email>' (self-approval rule)."
    )

    @property
    def digest(self) -> str:
        return self.artifact.digest

    @property
    def label(self) -> str:
        return f"{self.service} {self.version} ({self.commit[:10]}, {self.artifact.short_digest})"


class Instance(BaseModel):
    """One running copy of a release in one environment, as the target reports it."""

    id: str
    environment: str
    service: str
    slot: str = Field(description="role of the instance in a rollout: blue, green, canary, r0...")
    release: Release
    host: str = "127.0.0.1"
    port: int
    started_at: datetime
    handle: str = Field(description="target-specific handle: a pid, a container id")
    alive: bool = True

    @classmethod
    def new(
        cls, environment: str, release: Release, slot: str, host: str, port: int, handle: str
    ) -> Instance:
        """A new instance of ``release`` (its id: :func:`instance_name`), started now."""
        return cls(
            id=instance_name(environment, release, slot),
            environment=environment,
            service=release.service,
            slot=slot,
            release=release,
            host=host,
            port=port,
            started_at=datetime.now(UTC),
            handle=handle,
        )

    def variables(self) -> dict[str, str]:
        """What every instance finds in its environment about itself (any target)."""
        return {
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "DELIVERY_INSTANCE": self.id,
            "DELIVERY_ENVIRONMENT": self.environment,
            "DELIVERY_SERVICE": self.service,
            "DELIVERY_SLOT": self.slot,
        }

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def instance_name(environment: str, release: Release, slot: str) -> str:
    """A new instance's id: where it runs, whose it is and which release, unique
    (``production-hello-service-1a2b3c4d-green0-5e6f70``): what `docker ps`, an instance's
    folder and its DELIVERY_INSTANCE variable show."""
    return (
        f"{environment}-{release.service}-{release.commit[:8]}-{slot}-{uuid.uuid4().hex[:6]}"
    )
