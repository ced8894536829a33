"""The service manifest (``delivery.toml``): how to build, test, run and smoke-test a service.

Validated with pydantic; any error names the file, the field, the bad value and what is allowed,
so a user fixes it in one go.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.release import RunSpec, SmokeCheck

MANIFEST_NAME = "delivery.toml"
SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


class ServiceSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Service name: lowercase letters, digits, dashes.")

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SERVICE_NAME_RE.match(value):
            raise ValueError("must be lowercase letters, digits and dashes, starting with a letter")
        return value


class BuildSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["wheel", "image"] = "wheel"
    package: str | None = Field(
        default=None,
        description="Import package that receives _release.json; found under src/ if unset.",
    )
    lint: list[str] = Field(default_factory=lambda: ["ruff", "check", "."])
    requirements: str | None = Field(
        default=None,
        description="A requirements file with --hash on every line that locks the runtime "
        "dependencies; else uv.lock, else [project].dependencies resolved once at build.",
    )
    dockerfile: str = "Dockerfile"
    image_tag: str | None = Field(
        default=None, description="Never set: images are tagged with the full commit SHA."
    )

    @field_validator("image_tag")
    @classmethod
    def _never_latest(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(
                f"images are always tagged with the full commit SHA; a fixed tag like "
                f"{value!r} can be moved to other code, so a release would be mutable. Remove "
                "image_tag"
            )
        return value


class TestSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] = Field(default_factory=lambda: ["tests"])
    timeout_s: float = Field(default=600, gt=0)
    pytest_args: list[str] = Field(default_factory=list)
    requires: list[str] = Field(
        default_factory=lambda: ["pytest"],
        description="What the tests need beside the service's dependencies and its "
        "[project.optional-dependencies].test; locked with the runtime versions held.",
    )


class RunSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: list[str] = Field(min_length=1)
    health_path: str = "/healthz"
    #: optional: the router names the instance that answered, so which release serves is known
    #: without the app's help; when given, the app's own answer ({"commit": ...}) is checked too
    version_path: str | None = None
    startup_timeout_s: float = Field(default=20, gt=0, le=600)
    container_port: int = Field(default=8000, ge=1, le=65535)

    @field_validator("health_path", "version_path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be an absolute path starting with '/', e.g. '/healthz'")
        return value

    @field_validator("command")
    @classmethod
    def _needs_port(cls, value: list[str]) -> list[str]:
        if not any("{port}" in part for part in value):
            raise ValueError(
                "must contain '{port}' so each instance listens on the port it is given"
            )
        return value


class ChecksSection(BaseModel):
    """End-to-end checks against a deployed environment (tasks/checks.py)."""

    model_config = ConfigDict(extra="forbid")
    command: list[str] = Field(
        min_length=1,
        description="Run from the commit's tree with DELIVERY_URL set, e.g. "
        "['pytest', 'checks']; exit 0 passes.",
    )
    timeout_s: float = Field(default=300, gt=0, le=3600)


class ServiceManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: ServiceSection
    build: BuildSection = Field(default_factory=BuildSection)
    test: TestSection = Field(default_factory=TestSection)
    run: RunSection
    smoke: list[SmokeCheck] = Field(default_factory=list)
    checks: ChecksSection | None = None
    #: the migrations lab's settings (baseline, url_env, python, ...); validated by
    #: migrations_lab.settings, which reads this table itself
    lab: dict[str, Any] = Field(default_factory=dict)

    def run_spec(self) -> RunSpec:
        return RunSpec(
            command=list(self.run.command),
            health_path=self.run.health_path,
            version_path=self.run.version_path,
            startup_timeout_s=self.run.startup_timeout_s,
            container_port=self.run.container_port,
            smoke=list(self.smoke),
        )


def _field(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts) or "(top level)"


def describe_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: ``<source>: <field> ...`` (no prefix when ``source`` is empty)."""
    lines = []
    prefix = f"{source}: " if source else ""
    for error in exc.errors():
        field = _field(error["loc"])
        message = error["msg"].removeprefix("Value error, ").rstrip(".")
        if error["type"] == "missing":
            lines.append(f"{prefix}{field} is missing; it is required.")
        elif error["type"] == "extra_forbidden":
            lines.append(f"{prefix}{field} is not a known setting; remove it or check spelling.")
        elif not error["loc"]:  # a rule across fields: the message names them
            lines.append(f"{prefix}{message}.")
        else:
            value = error.get("input")
            lines.append(f"{prefix}{field} = {value!r}: {message}.")
    return "\n".join(lines)


def parse_manifest(text: str, source: str = MANIFEST_NAME) -> ServiceManifest:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, f"is not valid TOML ({exc}).", "fix the syntax.") from None
    try:
        return ServiceManifest.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            source,
            "invalid manifest:\n" + describe_validation_error("", exc),
            "see examples/hello-service/delivery.toml for a complete example.",
        ) from None


def load_manifest(service_dir: Path) -> ServiceManifest:
    path = Path(service_dir) / MANIFEST_NAME
    if not Path(service_dir).is_dir():
        raise ConfigError(
            str(service_dir), "is not a folder.", "pass the folder that holds delivery.toml."
        )
    if not path.exists():
        raise ConfigError(
            str(path),
            "not found: every service needs a delivery.toml manifest.",
            "create one; see examples/hello-service/delivery.toml.",
        )
    return parse_manifest(path.read_text(), str(path))
