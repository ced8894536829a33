"""Services in a shared environment: each one's route, and what it may change of the policy.

An environment (staging, production) carries many services. Each registered service has a
``ServiceRoute`` in the environment: its own frontend port (a router of its own, named after
it), and the settings where teams differ (strategy, instances, approvers, a slower rollout,
its database). The environment's policy is the floor: :func:`scoped_fields` applies a route
on top of it and can only tighten it (fewer approvers, a longer bake, more instances), never
loosen it. Everything an environment remembers is kept per service (router, instances,
ledger, locks): :func:`scope_key` names it.

Pure code (no Prefect): the Environment Block and its snapshot view (``EnvironmentView``) both
scope themselves through this module, so the rule is written once.

An environment saved before services existed has no routes: its one service (the one its
ledger recorded) is *adopted* (:func:`legacy_service`): its route keeps the names it had (the
environment-wide router, the environment's database), so what runs keeps running and its
history stays its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SERVICE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def check_service_name(value: str) -> str:
    if not SERVICE_NAME_RE.match(value or ""):
        raise ValueError(
            f"service name {value!r} must be lowercase letters, digits and dashes, starting "
            "with a letter (e.g. 'hello-service')"
        )
    return value


def scope_key(environment: str, service: str | None) -> str:
    """The name of what one service keeps in one environment (locks, markers, limits)."""
    return environment if service is None else f"{environment}.{service}"


class ServiceRoute(BaseModel):
    """One service's place in one environment, and the settings its team chose there.

    Every setting tightens the environment's policy or is left to it (None); see
    :func:`scoped_fields` for how each one combines."""

    model_config = ConfigDict(extra="forbid")

    port: int = Field(ge=1, le=65535, description="The service's frontend port here.")
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Its router's Prometheus exporter port."
    )
    adopted: bool = Field(
        default=False,
        description="Registered from an environment saved before services: keeps the "
        "environment-wide names it had (router folder, backend, the environment's database).",
    )
    strategy: Literal["blue-green", "canary", "rolling"] | None = Field(
        default=None, description="Its rollout strategy here (None: the environment's)."
    )
    instances: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="Instances of each release (never fewer than the environment's).",
    )
    approvers: list[str] | None = Field(
        default=None,
        description="Who may approve it here: must be among the environment's approvers when "
        "the environment names any (None: the environment's).",
    )
    requires_approval: bool = Field(
        default=False,
        description="A person approves each release here even where the "
        "environment does not ask for it.",
    )
    step_pause_s: float | None = Field(
        default=None, gt=0, description="A longer analysis step (never shorter)."
    )
    bake_s: float | None = Field(
        default=None, ge=0, description="A longer bake window (never shorter)."
    )
    database: str | None = Field(
        default=None,
        description="Name of the PostgresDatabase block that is its database here (None: "
        "none; an adopted route keeps the environment's).",
    )

    @field_validator("approvers")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [v.strip() for v in value]
        if not names or any(not n for n in names):
            raise ValueError("approvers: list names or handles, e.g. ['alice']")
        return names


def router_settings(router: dict[str, Any], service: str, route: ServiceRoute) -> dict[str, Any]:
    """The environment's router settings made this service's: its own port, and its own name
    (``service``: the router's folder and backend are named after it) unless adopted."""
    scoped = {**router, "frontend_port": route.port, "metrics_port": route.metrics_port}
    scoped["service"] = None if route.adopted else service
    return scoped


class PolicyConflict(ValueError):
    """A route's setting cannot be combined with the environment's policy (nobody could
    approve): said by the caller as bad input with the fix."""


def scoped_fields(
    environment: str, block: dict[str, Any], service: str, route: ServiceRoute
) -> dict[str, Any]:
    """The fields of an environment (``block``: its JSON dump) as they apply to one service:
    router, strategy, promotion and bake, with the route's settings on top. Only ever
    stricter than the environment (pure)."""
    strategy = dict(block.get("strategy") or {})
    if route.strategy:
        strategy["kind"] = route.strategy
    if route.instances:
        strategy["instances"] = max(int(strategy.get("instances") or 1), route.instances)
    if route.step_pause_s:
        strategy["step_pause_s"] = max(float(strategy.get("step_pause_s") or 0), route.step_pause_s)
    promotion = dict(block.get("promotion") or {})
    if route.requires_approval:
        promotion["requires_approval"] = True
    if route.approvers:
        floor = [a.lower() for a in promotion.get("approvers") or []]
        chosen = [a for a in route.approvers if not floor or a.lower() in floor]
        if not chosen:
            raise PolicyConflict(
                f"{service}'s approvers in {environment} ({', '.join(route.approvers)}) are not "
                f"among the environment's ({', '.join(promotion.get('approvers') or [])}): "
                "nobody could approve it"
            )
        promotion["approvers"] = chosen
    bake = float(block.get("bake_s") or 0)
    if route.bake_s is not None:
        bake = max(bake, route.bake_s)
    return {
        "router": router_settings(block["router"], service, route),
        "strategy": strategy,
        "promotion": promotion,
        "bake_s": bake,
    }


# ---------------------------------------------------------------------------- legacy setups
def legacy_ledger_path(state_dir: str, environment: str) -> Path:
    """Where an environment's one ledger was kept before services (read, never written)."""
    return Path(state_dir) / "ledger" / f"{environment}.jsonl"


def legacy_service(state_dir: str, environment: str) -> str | None:
    """The service an environment saved before services was serving: the service of the
    newest entry of its old ledger (None: there is none)."""
    path = legacy_ledger_path(state_dir, environment)
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            service = json.loads(line)["release"]["service"]
        except (ValueError, KeyError, TypeError):
            continue  # a torn line
        if isinstance(service, str) and SERVICE_NAME_RE.match(service):
            return service
    return None


def adopted_route(
    state_dir: str,
    environment: str,
    service: str,
    routes: dict[str, ServiceRoute],
    port: int,
    metrics_port: int | None = None,
) -> ServiceRoute | None:
    """The route an environment saved before services gives its one service (None: this
    service is not that one, or another route holds the old names already)."""
    if any(r.adopted for r in routes.values()):
        return None
    if legacy_service(state_dir, environment) != service:
        return None
    return ServiceRoute(port=port, metrics_port=metrics_port, adopted=True)


def unknown_service(environment: str, service: str, routes: dict[str, Any]) -> str:
    """What to say when a service has no route in an environment (problem, fix)."""
    known = ", ".join(sorted(routes)) or "none yet"
    return (
        f"service {service!r} has no route in environment {environment!r} (registered "
        f"there: {known})"
    )


def register_fix(service_dir: str | None = None) -> str:
    return (
        f"register it once: `delivery service add {service_dir or 'SERVICE_DIR'}` (it gives "
        "the service a route in each environment), then deliver again."
    )


def pick_service(environment: str, services: list[str], asked: str | None, command: str) -> str:
    """The service a command acts on: the one asked for, or the only one here (a command
    that changes something never guesses between two)."""
    if asked:
        if asked not in services:
            raise_unknown(environment, asked, services)
        return asked
    if len(services) == 1:
        return services[0]
    from prefect_delivery.blocks.errors import ConfigError

    raise ConfigError(
        f"{command} {environment}",
        f"{environment} carries {len(services)} services ({', '.join(services) or 'none'}); "
        "say which one.",
        f"add --service NAME (e.g. `{command} {environment} --service "
        f"{services[0] if services else 'hello-service'}`).",
    )


def raise_unknown(environment: str, service: str, services) -> None:
    from prefect_delivery.blocks.errors import ConfigError

    raise ConfigError(
        f"environment {environment!r}",
        unknown_service(environment, service, {s: None for s in services}) + ".",
        register_fix(),
    )
