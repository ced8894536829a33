"""Environment: one place a release runs (staging, production), with its target and router.

Besides configuration, the block answers the question every stage starts with: what is live
here right now? ``observe`` reads it from the router (weights, health) and the target (which
instance runs which release), never from a previous run's memory.
"""

from __future__ import annotations

import re

from prefect.blocks.core import Block
from pydantic import Field, field_validator

from blocks.haproxy import HAProxyRouter
from blocks.ledger import Ledger
from blocks.live import LiveState, join_live_state
from blocks.paths import default_state_dir
from blocks.process_target import ProcessTarget
from blocks.settings import StrategySettings, VerificationSettings

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


class Environment(Block):
    """A deployment environment: where instances run, how traffic reaches them, how to judge."""

    _block_type_name = "Delivery Environment"
    _block_type_slug = "delivery-environment"
    _description = (
        "An environment of the delivery pipeline (staging, production): its target, its "
        "router, verification thresholds, rollout strategy and bake window."
    )

    name: str = Field(description="Environment name: lowercase letters, digits and dashes.")
    target: ProcessTarget = Field(description="Where instances run.")
    router: HAProxyRouter = Field(description="How traffic reaches instances.")
    verification: VerificationSettings = Field(default_factory=VerificationSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    bake_s: float = Field(
        default=3600.0, ge=0, description="Monitored bake window after a production deploy."
    )
    requires_approval: bool = Field(
        default=False, description="A human must approve before a release reaches it."
    )
    state_dir: str = Field(
        default_factory=default_state_dir, description="Folder for this environment's ledger."
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_slug(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                f"environment name {value!r} must be lowercase letters, digits and dashes, "
                "starting with a letter (e.g. 'staging')"
            )
        return value

    @property
    def url(self) -> str:
        return self.router.frontend_url

    def ledger(self) -> Ledger:
        return Ledger(self.state_dir, self.name)

    def observe(self) -> LiveState:
        """What runs here and who gets traffic, read from the router and the target now."""
        running = self.router.is_running()
        servers = self.router.servers() if running else []
        instances = self.target.list(self.name)
        return join_live_state(self.name, self.url, servers, instances, running)
