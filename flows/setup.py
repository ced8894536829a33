"""Create the blocks a local pipeline needs: an artifact store and two environments.

Used by ``delivery demo`` and ``delivery setup``; a team with its own blocks skips this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from blocks.artifacts import ArtifactStore
from blocks.docker_target import DockerTarget, scope_for
from blocks.environment import Environment
from blocks.haproxy import HAProxyRouter
from blocks.process_target import ProcessTarget
from blocks.registry import ImageRegistry
from blocks.settings import StrategySettings, VerificationSettings


class LocalSetup(BaseModel):
    state_dir: str
    staging_port: int = 18081
    production_port: int = 18082
    staging_strategy: str = "blue-green"
    production_strategy: str = "blue-green"
    bake_s: float = 5.0
    keep_previous_s: float = 0.0
    instances: int = 1
    production_requires_approval: bool = True
    target: Literal["process", "docker"] = "process"
    registry: str = "127.0.0.1:5000"  # docker: where images are pushed
    base_image: str | None = None  # docker: BASE_IMAGE build arg (None: the Dockerfile's)


def environment(
    name: str,
    port: int,
    state_dir: str,
    strategy: StrategySettings,
    bake_s: float,
    requires_approval: bool,
    verification: VerificationSettings | None = None,
    target: ProcessTarget | DockerTarget | None = None,
) -> Environment:
    return Environment(
        name=name,
        target=target or ProcessTarget(state_dir=state_dir),
        router=HAProxyRouter(name=name, frontend_port=port, state_dir=state_dir),
        strategy=strategy,
        verification=verification or VerificationSettings(),
        bake_s=bake_s,
        requires_approval=requires_approval,
        state_dir=state_dir,
    )


def create_local_blocks(setup: LocalSetup) -> dict[str, str]:
    """Save 'artifacts', 'staging' and 'production' blocks; returns environment -> URL."""
    state = str(Path(setup.state_dir).resolve())
    target = None
    registry = None
    if setup.target == "docker":
        registry = ImageRegistry(
            address=setup.registry,
            build_args={"BASE_IMAGE": setup.base_image} if setup.base_image else {},
        )
        registry.save("registry", overwrite=True)
        target = DockerTarget(registry=registry, scope=scope_for(state))
        target.save("docker", overwrite=True)  # named: it references `registry`, which
        # can then get credentials later and both environments see them
    ArtifactStore(root=str(Path(state) / "artifacts"), registry=registry).save(
        "artifacts", overwrite=True
    )
    urls = {}
    for name, port, kind, bake, approval in (
        ("staging", setup.staging_port, setup.staging_strategy, 0.0, False),
        (
            "production",
            setup.production_port,
            setup.production_strategy,
            setup.bake_s,
            setup.production_requires_approval,
        ),
    ):
        strategy = StrategySettings(
            kind=kind,
            instances=setup.instances,
            keep_previous_s=setup.keep_previous_s,
            step_pause_s=5,
            analysis_interval_s=1,
        )
        env = environment(name, port, state, strategy, bake, approval, target=target)
        env.save(name, overwrite=True)
        urls[name] = env.url
    return urls


#: The offline base image .ci/docker/base-image.sh pushes (python + uvicorn + starlette).
LOCAL_WEB_BASE = "prefect-delivery/python-web:3.11"


def pick_base_image(registry: str) -> str | None:
    """``<registry>/prefect-delivery/python-web:3.11`` when the engine or the registry has it
    (a machine set up by .ci/docker/up.sh: offline builds), else None: the Dockerfile's own
    default, the official python image from Docker Hub."""
    import docker

    candidate = f"{registry}/{LOCAL_WEB_BASE}"
    try:
        client = docker.from_env(timeout=10)
    except docker.errors.DockerException:
        return None
    try:
        try:
            client.images.get(candidate)
            return candidate
        except docker.errors.ImageNotFound:
            pass
        try:
            client.api.inspect_distribution(candidate)
            return candidate
        except docker.errors.APIError:
            return None
    finally:
        client.close()
