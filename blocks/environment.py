"""Environment: one place a release runs (staging, production), with its target and router.

Besides configuration, the block answers the question every stage starts with: what is live
here right now? ``observe`` reads it from the router (weights, health) and the target (which
instance runs which release), never from a previous run's memory; ``running`` is the target's
answer alone (which instances are alive).
"""

from __future__ import annotations

import re
from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field, field_validator, model_validator

from prefect_delivery.blocks.database import PostgresDatabase
from prefect_delivery.blocks.environment_view import snapshot_path
from prefect_delivery.blocks.ledger import Ledger
from prefect_delivery.blocks.live import LiveState, join_live_state
from prefect_delivery.blocks.metrics import MetricSource
from prefect_delivery.blocks.metrics.probe import ProbeSource
from prefect_delivery.blocks.metrics.prometheus import PrometheusSource
from prefect_delivery.blocks.metrics.router_stats import RouterStatsSource
from prefect_delivery.blocks.paths import atomic_write_json, default_state_dir
from prefect_delivery.blocks.release import Instance
from prefect_delivery.blocks.routing import RouterBlock
from prefect_delivery.blocks.schema_cache import SchemaOnce
from prefect_delivery.blocks.secrets import load_secret
from prefect_delivery.blocks.settings import (
    PromotionPolicy,
    StrategySettings,
    VerificationSettings,
)
from prefect_delivery.blocks.targets import TargetBlock, target_kind

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
ENV_VAR_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
BLOCK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class Environment(SchemaOnce, Block):
    """A deployment environment: where instances run, how traffic reaches them, how to judge."""

    _block_type_name = "Delivery Environment"
    _block_type_slug = "delivery-environment"
    _description = (
        "An environment of the delivery pipeline (staging, production): its target, its "
        "router, verification thresholds, rollout strategy and bake window."
    )

    name: str = Field(description="Environment name: lowercase letters, digits and dashes.")
    target: TargetBlock = Field(
        description="Where instances run: local processes (wheels) or containers (images)."
    )
    router: RouterBlock = Field(description="How traffic reaches instances.")
    verification: VerificationSettings = Field(default_factory=VerificationSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    bake_s: float = Field(
        default=3600.0, ge=0, description="Monitored bake window after a production deploy."
    )
    promotion: PromotionPolicy = Field(
        default_factory=PromotionPolicy,
        description="Who and what may send a release here: upstream, approval, approvers.",
    )
    capacity: int | None = Field(
        default=None,
        ge=1,
        description="Most instances this environment can run at once (None: the router's "
        "server_slots). A rollout needs room for the stable and the new release together.",
    )
    state_dir: str = Field(
        default_factory=default_state_dir, description="Folder for this environment's ledger."
    )
    haproxy_stats: RouterStatsSource | None = Field(
        default_factory=RouterStatsSource,
        description="Metric source: live traffic counters from the router (None: off; the "
        "field keeps its first name so saved environments load).",
    )
    probes: ProbeSource | None = Field(
        default_factory=ProbeSource,
        description="Metric source: synthetic probes straight at instances (None: off).",
    )
    prometheus: PrometheusSource | None = Field(
        default=None, description="Metric source: a Prometheus to query (optional)."
    )
    database: PostgresDatabase | None = Field(
        default=None,
        description="The environment's database: releases get it as DATABASE_URL, and their "
        "migrations are rehearsed and applied to it before their code is deployed (None: "
        "no database).",
    )
    instance_secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Secrets every instance gets in its environment: variable name -> name "
        "of a Prefect Secret block (e.g. {'PAYMENTS_TOKEN': 'payments-token'}). Only block "
        "names live here; the values stay in the Secret blocks.",
    )

    @model_validator(mode="before")
    @classmethod
    def _requires_approval_moved(cls, data: object) -> object:
        """Blocks saved before the promotion policy carry `requires_approval` at the top."""
        if isinstance(data, dict) and "requires_approval" in data:
            data = dict(data)
            flag = data.pop("requires_approval")
            promotion = dict(data.get("promotion") or {})
            promotion.setdefault("requires_approval", bool(flag))
            data["promotion"] = promotion
        return data

    @property
    def requires_approval(self) -> bool:
        return self.promotion.requires_approval

    @field_validator("instance_secrets")
    @classmethod
    def _secret_references(cls, value: dict[str, str]) -> dict[str, str]:
        for var, block in value.items():
            if not ENV_VAR_RE.match(var):
                raise ValueError(
                    f"instance_secrets: {var!r} is not an environment variable name; use "
                    "uppercase letters, digits and underscores (e.g. 'PAYMENTS_TOKEN')"
                )
            if var == "DATABASE_URL":
                raise ValueError(
                    "instance_secrets: DATABASE_URL comes from the environment's database "
                    "block; set `database` instead"
                )
            if not BLOCK_NAME_RE.match(block):
                raise ValueError(
                    f"instance_secrets[{var}]: {block!r} is not a Secret block name (lowercase "
                    "letters, digits and dashes); put the value in a Secret block and name it "
                    "here, never the value itself"
                )
        return value

    @field_validator("target", mode="before")
    @classmethod
    def _target_kind(cls, value: object) -> object:
        """A target saved as a block of its own loads as the right kind (see target_kind)."""
        return target_kind(value)

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

    def metric_sources(self) -> list[MetricSource]:
        return [s for s in (self.haproxy_stats, self.probes, self.prometheus) if s is not None]

    def running(self, among: list[Instance] | None = None) -> list[Instance]:
        """The instances alive here now, as the target lists them (the fresh records); with
        ``among``, only those of that list that are still alive, in its order."""
        alive = {i.id: i for i in self.target.list(self.name) if i.alive}
        if among is None:
            return list(alive.values())
        return [alive[i.id] for i in among if i.id in alive]

    def instance_env(self) -> dict[str, str]:
        """What every instance gets in its environment (never in argv): DATABASE_URL from the
        database block, and each of ``instance_secrets`` read from its Secret block."""
        extra: dict[str, str] = {}
        if self.database is not None:
            extra.update(self.database.instance_env())
        for var, block in self.instance_secrets.items():
            extra[var] = load_secret(block, f"environment {self.name}, instance_secrets[{var}]")
        return extra

    def ledger(self) -> Ledger:
        return Ledger(self.state_dir, self.name)

    def observe(self) -> LiveState:
        """What runs here and who gets traffic, read from the router and the target now."""
        running = self.router.is_running()
        slots = self.router.slots() if running else []
        instances = self.target.list(self.name)
        return join_live_state(self.name, self.url, slots, instances, running)

    # ----------------------------------------------------------------- the local snapshot
    def remember(self) -> Path:
        """Keep what the read-only commands and a break-glass rollback need, beside the
        environment's state (``<state_dir>/environments/<name>.json``): the block as saved,
        without any secret (the database's URL only masked, a Prometheus token not at all).
        `delivery status`, `down` and `rollback` then act at once, without the Prefect API.
        Written by `delivery setup` and by every flow that loads the block."""
        data = self.model_dump(mode="json", exclude={"database", "prometheus"})
        database = None
        if self.database is not None:
            database = {
                "masked_url": self.database.masked_url,
                "local_cluster": self.database.local_cluster,
            }
        path = snapshot_path(self.state_dir, self.name)
        atomic_write_json(path, {"environment": data, "database": database})
        return path
