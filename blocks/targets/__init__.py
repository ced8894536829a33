"""The Target seam: where instances of a release run.

A target starts an instance of a release, stops it, and lists what runs, reading the truth from
the platform (processes, containers), not from what a previous run remembers. Implementations:
``ProcessTarget`` (local processes, the embedded default) and ``DockerTarget`` (containers).
Nothing outside this package knows whether an instance is a process or a container.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from prefect_delivery.blocks.release import Instance, Release


@runtime_checkable
class Target(Protocol):
    def prepare(self, release: Release) -> None:
        """Make the artifact available locally (unpack the wheel, pull the image)."""

    def start(
        self, release: Release, environment: str, slot: str, env: dict[str, str] | None = None
    ) -> Instance:
        """Start one instance; returns once the platform says it started (not yet healthy)."""

    def confirm(self, instance: Instance) -> None:
        """Once it answers: the instance itself listens on its port (not another program
        that took it); raises naming what holds the port otherwise. Ends the port's lease."""

    def stop(self, instance: Instance, timeout_s: float = 10.0) -> None:
        """Stop and remove one instance; a no-op for one that is already gone."""

    def list(self, environment: str) -> list[Instance]:
        """Every instance of this environment the platform knows, alive or exited."""

    def logs(self, instance: Instance, lines: int = 20) -> str:
        """The tail of an instance's output, for error messages."""


def __getattr__(name: str) -> object:
    # The Block union an Environment's `target` holds, imported lazily (docker-py is heavy).
    if name == "TargetBlock":
        from prefect_delivery.blocks.targets.docker import DockerTarget
        from prefect_delivery.blocks.targets.process import ProcessTarget

        return ProcessTarget | DockerTarget
    raise AttributeError(name)


def target_kind(value: object) -> object:
    """A target saved as a block of its own comes back from the server without its
    block_type_slug; tell the kinds apart by their fields (pydantic validator helper)."""
    if isinstance(value, dict) and "block_type_slug" not in value:
        from prefect_delivery.blocks.targets.docker import DockerTarget
        from prefect_delivery.blocks.targets.process import ProcessTarget

        docker_only = set(DockerTarget.model_fields) - set(ProcessTarget.model_fields)
        kind = DockerTarget if docker_only & value.keys() else ProcessTarget
        value = {**value, "block_type_slug": kind.get_block_type_slug()}
    return value
