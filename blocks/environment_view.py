"""An environment as its local snapshot says: what the commands that must answer at once need.

``Environment.remember()`` writes the block (without its secrets) to
``<state_dir>/environments/<name>.json`` whenever `delivery setup` or a flow uses it. This
reads it back with no Prefect import and no Prefect API: the router's runtime client, the
target's instance list, the ledger. `delivery status`, `down`, a break-glass `rollback` and
the monitor listener act from it in milliseconds. It can switch traffic between running
instances; it can never start one (that needs the secrets, which stay in the blocks).

As the Block does, a view is scoped to one service (``for_service``, through
blocks/services.py) before it reads a router, instances or a ledger.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.ledger import Ledger
from prefect_delivery.blocks.live import LiveState, join_live_state
from prefect_delivery.blocks.release import Instance
from prefect_delivery.blocks.routing import Router, control_from_settings
from prefect_delivery.blocks.services import (
    PolicyConflict,
    ServiceRoute,
    adopted_route,
    legacy_service,
    pick_service,
    register_fix,
    scope_key,
    scoped_fields,
    unknown_service,
)

SNAPSHOTS = "environments"


def snapshot_path(state_dir: str, name: str) -> Path:
    return Path(state_dir) / SNAPSHOTS / f"{name}.json"


def service_snapshot_path(state_dir: str, name: str, service: str) -> Path:
    return Path(state_dir) / SNAPSHOTS / name / f"{service}.json"


class EnvironmentView(BaseModel):
    name: str
    state_dir: str
    block: dict[str, Any]  # the Environment block as dumped (no secrets); scoped: its fields
    database: dict[str, Any] | None = None  # masked_url, local_cluster
    path: str
    service: str | None = None  # set by for_service

    # ----------------------------------------------------------------- finding it
    @classmethod
    def recall(cls, name: str, state_dirs: list[str]) -> EnvironmentView | None:
        for folder in state_dirs:
            path = snapshot_path(folder, name)
            try:
                raw = json.loads(path.read_text())
                block = raw["environment"]
                return cls(
                    name=block["name"],
                    state_dir=block["state_dir"],
                    block=block,
                    database=raw.get("database"),
                    path=str(path),
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return None

    @classmethod
    def recall_all(cls, state_dirs: list[str]) -> list[EnvironmentView]:
        found: dict[str, EnvironmentView] = {}
        for folder in state_dirs:
            for path in sorted((Path(folder) / SNAPSHOTS).glob("*.json")):
                if path.stem not in found and (view := cls.recall(path.stem, [folder])):
                    found[path.stem] = view
        return [found[name] for name in sorted(found)]

    # ----------------------------------------------------------------- services
    def routes(self) -> dict[str, ServiceRoute]:
        """The registered services' routes; an environment saved before services has its
        one service's (adopted, as the Block adopts it)."""
        routes = {
            name: ServiceRoute.model_validate(route)
            for name, route in (self.block.get("services") or {}).items()
        }
        legacy = legacy_service(self.state_dir, self.name)
        if legacy and legacy not in routes:
            route = self._adopted(legacy, routes)
            if route is not None:
                routes[legacy] = route
        return routes

    def _adopted(self, service: str, routes: dict[str, ServiceRoute]) -> ServiceRoute | None:
        router = self.block["router"]
        return adopted_route(
            self.state_dir,
            self.name,
            service,
            routes,
            router["frontend_port"],
            router.get("metrics_port"),
        )

    def services(self) -> list[str]:
        return sorted(self.routes())

    def for_service(self, service: str) -> EnvironmentView:
        """The view of one service's part of the environment (see Environment.for_service)."""
        if self.service is not None:
            return self
        routes = self.routes()
        route = routes.get(service)
        if route is None:
            raise ConfigError(
                f"environment {self.name!r}",
                unknown_service(self.name, service, routes) + ".",
                register_fix(),
            )
        try:
            fields = scoped_fields(self.name, self.block, service, route)
        except PolicyConflict as exc:
            raise ConfigError(
                f"environment {self.name!r}, services[{service!r}]", f"{exc}."
            ) from None
        database = self.database if route.adopted else None
        if not route.adopted:
            try:
                path = service_snapshot_path(self.state_dir, self.name, service)
                database = json.loads(path.read_text()).get("database")
            except (OSError, ValueError, AttributeError):
                database = None
        return self.model_copy(
            update={"block": {**self.block, **fields}, "database": database, "service": service}
        )

    def pick(self, service: str | None, command: str) -> EnvironmentView:
        """Scoped to the service a command names, or to the only one here."""
        return self.for_service(pick_service(self.name, self.services(), service, command))

    def scoped(self, services: list[str] | None = None) -> list[EnvironmentView]:
        """One view per service here (those ``services`` names, when given, that are here)."""
        names = self.services()
        if services:
            names = [n for n in names if n in services]
        return [self.for_service(n) for n in names]

    @property
    def key(self) -> str:
        return scope_key(self.name, self._scoped())

    @property
    def scope(self) -> str:
        return f"{self.name}/{self._scoped()}"

    @property
    def cli(self) -> str:
        return f"{self.name} --service {self._scoped()}"

    def _scoped(self) -> str:
        if self.service is None:
            raise RuntimeError(f"view of {self.name!r} is not scoped to a service")
        return self.service

    # ----------------------------------------------------------------- reading
    @property
    def router_settings(self) -> dict[str, Any]:
        self._scoped()
        return self.block["router"]

    @property
    def url(self) -> str:
        router = self.router_settings
        return f"http://{router.get('frontend_host', '127.0.0.1')}:{router['frontend_port']}"

    @property
    def promotion(self) -> dict[str, Any]:
        return self.block.get("promotion") or {}

    @property
    def strategy(self) -> dict[str, Any]:
        return self.block.get("strategy") or {}

    @property
    def target_kind(self) -> str:
        return "docker" if "docker_host" in self.block["target"] else "process"

    def router(self) -> Router:
        return control_from_settings(self.router_settings)

    def instances(self) -> list[Instance]:
        """Every instance of this service here (alive or exited)."""
        service = self._scoped()
        target = self.block["target"]
        if self.target_kind == "process":
            from prefect_delivery.blocks.targets.process_records import ProcessRecords

            found = ProcessRecords(target["state_dir"]).list(self.name)
        else:
            from prefect_delivery.blocks.targets.docker_labels import list_instances

            found = list_instances(target, self.name)
        return [i for i in found if i.service == service]

    def running(self, among: list[Instance] | None = None) -> list[Instance]:
        alive = {i.id: i for i in self.instances() if i.alive}
        return (
            list(alive.values()) if among is None else [alive[i.id] for i in among if i.id in alive]
        )

    def stop(self, instance: Instance, timeout_s: float = 5.0) -> None:
        """Stop one instance (`delivery down`)."""
        target = self.block["target"]
        if self.target_kind == "process":
            from prefect_delivery.blocks.targets.process_records import ProcessRecords

            ProcessRecords(target["state_dir"]).stop(instance, timeout_s)
            return
        from prefect_delivery.blocks.targets.docker_labels import stop_container

        stop_container(target, instance, timeout_s)

    def stop_router(self) -> None:
        self.router().stop()

    def observe(self) -> LiveState:
        router = self.router()
        running = router.is_running()
        slots = router.slots() if running else []
        return join_live_state(self.name, self.url, slots, self.instances(), running)

    def ledger(self) -> Ledger:
        return Ledger(self.state_dir, self.name, self._scoped())
