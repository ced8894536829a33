"""Environment: one place releases run (staging, production), shared by many services.

The block holds what every service here shares (the target, the router's settings, the
policy, how releases are judged) and one route per registered service (``services``: its
frontend port and the settings its team chose, blocks/services.py). Every stage works on one
service's part of it: ``env.for_service(name)`` is the environment as that service sees it
(its own router, instances, ledger and database; the policy with the route's tightenings), and
nothing of another service is in it.

Besides configuration, the block answers the question every stage starts with: what is live
here right now? ``observe`` reads it from the router (weights, health) and the target (which
instance runs which release), never from a previous run's memory; ``running`` is the target's
answer alone (which instances are alive).
"""

from __future__ import annotations

import re
from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from prefect_delivery.blocks.database import PostgresDatabase
from prefect_delivery.blocks.environment_view import service_snapshot_path, snapshot_path
from prefect_delivery.blocks.errors import ConfigError
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
from prefect_delivery.blocks.services import (
    PolicyConflict,
    ServiceRoute,
    adopted_route,
    check_service_name,
    legacy_service,
    pick_service,
    register_fix,
    scope_key,
    scoped_fields,
    unknown_service,
)
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
    services: dict[str, ServiceRoute] = Field(
        default_factory=dict,
        description="The services delivered here (`delivery service add`): name -> its route "
        "(frontend port) and the settings its team chose, which only ever tighten this "
        "environment's policy.",
    )

    #: set on the copy ``for_service`` returns: the service it is scoped to, and the block
    _service: str | None = PrivateAttr(default=None)
    _base: Environment | None = PrivateAttr(default=None)
    _adopted: bool = PrivateAttr(default=False)

    @field_validator("services")
    @classmethod
    def _service_names(cls, value: dict[str, ServiceRoute]) -> dict[str, ServiceRoute]:
        for name in value:
            check_service_name(name)
        ports = [r.port for r in value.values()]
        if len(set(ports)) != len(ports):
            raise ValueError(
                f"services: two routes share a frontend port ({sorted(ports)}); give each "
                "service its own port"
            )
        return value

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

    # ----------------------------------------------------------------- one service's part
    @property
    def service(self) -> str:
        """The service this copy is scoped to (see ``for_service``)."""
        if self._service is None:
            raise RuntimeError(
                f"environment {self.name!r} is not scoped to a service: call for_service(name)"
            )
        return self._service

    @property
    def key(self) -> str:
        """What this service keeps here is named by this (locks, markers, limits)."""
        return scope_key(self.name, self.service)

    @property
    def scope(self) -> str:
        """How messages name it: 'production/hello-service'."""
        return f"{self.name}/{self.service}"

    @property
    def cli(self) -> str:
        """How a command names it: 'production --service hello-service'."""
        return f"{self.name} --service {self.service}"

    @property
    def adopted_now(self) -> bool:
        """The route was adopted from a setup saved before services (not yet saved here)."""
        return self._adopted

    def route(self, service: str, service_dir: str | None = None) -> ServiceRoute:
        """The service's route here; a block saved before services adopts its one service."""
        check_service_name(service)
        route = self.services.get(service)
        if route is None:
            route = adopted_route(
                self.state_dir,
                self.name,
                service,
                self.services,
                self.router.frontend_port,
                self.router.metrics_port,
            )
        if route is None:
            raise ConfigError(
                f"environment {self.name!r}",
                unknown_service(self.name, service, self.services) + ".",
                register_fix(service_dir),
            )
        return route

    def service_names(self) -> list[str]:
        """The services here: the registered ones, and one adopted from before services."""
        names = set(self.services)
        legacy = legacy_service(self.state_dir, self.name)
        if legacy and legacy not in names and not any(r.adopted for r in self.services.values()):
            names.add(legacy)
        return sorted(names)

    def pick(self, service: str | None, command: str) -> Environment:
        """Scoped to the service a command names, or to the only one here."""
        return self.for_service(pick_service(self.name, self.service_names(), service, command))

    def for_service(self, service: str, service_dir: str | None = None) -> Environment:
        """This environment as ``service`` sees it: its own router (its frontend port, a
        router named after it), its instances, ledger and database, and the policy with its
        route's settings on top (only ever stricter). Nothing of another service is in it."""
        if self._service is not None:
            if self._service != service:
                raise RuntimeError(f"{self.scope} cannot be scoped to {service!r}")
            return self
        route = self.route(service, service_dir)
        try:
            fields = scoped_fields(
                self.name,
                self.model_dump(mode="json", include={"router", "strategy", "promotion", "bake_s"}),
                service,
                route,
            )
            strategy = StrategySettings.model_validate(fields["strategy"])
            promotion = PromotionPolicy.model_validate(fields["promotion"])
        except (PolicyConflict, ValidationError) as exc:
            raise ConfigError(
                f"environment {self.name!r}, services[{service!r}]",
                f"{exc}.",
                f"register it again with settings that fit the environment (`delivery service "
                f"add {service_dir or 'SERVICE_DIR'} --env {self.name} ...`).",
            ) from None
        router = self.router.model_copy(
            update={k: fields["router"][k] for k in ("frontend_port", "metrics_port", "service")}
        )
        if route.adopted:
            database = self.database
        elif route.database:
            database = _load_database(route.database, self.name, service)
        else:
            database = None
        scoped = self.model_copy(
            update={
                "router": router,
                "strategy": strategy,
                "promotion": promotion,
                "bake_s": fields["bake_s"],
                "database": database,
            }
        )
        scoped._service = service
        scoped._base = self
        scoped._adopted = service not in self.services
        return scoped

    def keep_adopted(self) -> None:
        """Save the route adopted from a setup saved before services, so it stays this
        service's (a scoped copy: saves the environment's block with the route added)."""
        if not self._adopted or self._base is None:
            return
        base = self._base
        base.services = {**base.services, self.service: self.route(self.service)}
        base.save(base._block_document_name or self.name, overwrite=True)
        self._adopted = False

    def save(self, *args, **kwargs):  # noqa: ANN201 - Block.save's own signature
        if self._service is not None:
            raise RuntimeError(
                f"{self.scope} is one service's view of the environment; save the environment "
                "itself (Environment.load(name)), never this copy"
            )
        return super().save(*args, **kwargs)

    @property
    def url(self) -> str:
        return self.router.frontend_url

    def metric_sources(self) -> list[MetricSource]:
        return [s for s in (self.haproxy_stats, self.probes, self.prometheus) if s is not None]

    def instances(self) -> list[Instance]:
        """Every instance of this service here the target knows, alive or exited."""
        service = self.service
        return [i for i in self.target.list(self.name) if i.service == service]

    def running(self, among: list[Instance] | None = None) -> list[Instance]:
        """The instances of this service alive here now, as the target lists them (the fresh
        records); with ``among``, only those of that list that are still alive, in its
        order."""
        alive = {i.id: i for i in self.instances() if i.alive}
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
        return self.history(self.service)

    def history(self, service: str) -> Ledger:
        """The ledger of ``service`` here (read it without a route: an upstream's history)."""
        return Ledger(self.state_dir, self.name, service)

    def observe(self) -> LiveState:
        """What of this service runs here and who gets traffic, read from its router and
        the target now."""
        running = self.router.is_running()
        slots = self.router.slots() if running else []
        return join_live_state(self.name, self.url, slots, self.instances(), running)

    # ----------------------------------------------------------------- the local snapshot
    def remember(self) -> Path:
        """Keep what the read-only commands and a break-glass rollback need, beside the
        environment's state (``<state_dir>/environments/<name>.json``): the block as saved,
        without any secret (the database's URL only masked, a Prometheus token not at all);
        a copy scoped to a service also keeps its database's
        (``environments/<name>/<service>.json``). `delivery status`, `down` and `rollback`
        then act at once, without the Prefect API. Written by `delivery setup`, `delivery
        service add` and by every flow that loads the block."""
        base = self._base or self
        data = base.model_dump(mode="json", exclude={"database", "prometheus"})
        path = snapshot_path(self.state_dir, self.name)
        atomic_write_json(path, {"environment": data, "database": _masked(base.database)})
        if self._service is not None:
            atomic_write_json(
                service_snapshot_path(self.state_dir, self.name, self._service),
                {"service": self._service, "database": _masked(self.database)},
            )
        return path


def _masked(database: PostgresDatabase | None) -> dict | None:
    if database is None:
        return None
    return {"masked_url": database.masked_url, "local_cluster": database.local_cluster}


def _load_database(name: str, environment: str, service: str) -> PostgresDatabase:
    try:
        return PostgresDatabase.load(name)
    except ValueError:
        raise ConfigError(
            f"environment {environment!r}, services[{service!r}].database",
            f"names the PostgresDatabase block {name!r}, which does not exist.",
            "create it (the Prefect UI, Blocks) or register the service again "
            f"(`delivery service add SERVICE_DIR --env {environment}`).",
        ) from None
