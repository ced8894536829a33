"""Create the blocks a local pipeline needs: an artifact store and two environments.

Used by ``delivery demo`` and ``delivery setup``; a team with its own blocks skips this.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from blocks.artifacts import ArtifactStore
from blocks.environment import Environment
from blocks.haproxy import HAProxyRouter
from blocks.process_target import ProcessTarget
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


def environment(
    name: str,
    port: int,
    state_dir: str,
    strategy: StrategySettings,
    bake_s: float,
    requires_approval: bool,
    verification: VerificationSettings | None = None,
) -> Environment:
    return Environment(
        name=name,
        target=ProcessTarget(state_dir=state_dir),
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
    ArtifactStore(root=str(Path(state) / "artifacts")).save("artifacts", overwrite=True)
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
        env = environment(name, port, state, strategy, bake, approval)
        env.save(name, overwrite=True)
        urls[name] = env.url
    return urls
