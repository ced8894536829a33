"""An environment as its local snapshot says: what the commands that must answer at once need.

``Environment.remember()`` writes the block (without its secrets) to
``<state_dir>/environments/<name>.json`` whenever `delivery setup` or a flow uses it. This
reads it back with no Prefect import and no Prefect API: the router's runtime client, the
target's instance list, the ledger. `delivery status`, `down`, a break-glass `rollback` and
the monitor listener act from it in milliseconds. It can switch traffic between running
instances; it can never start one (that needs the secrets, which stay in the blocks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from prefect_delivery.blocks.ledger import Ledger
from prefect_delivery.blocks.live import LiveState, join_live_state
from prefect_delivery.blocks.release import Instance
from prefect_delivery.blocks.routing import Router, control_from_settings

SNAPSHOTS = "environments"


def snapshot_path(state_dir: str, name: str) -> Path:
    return Path(state_dir) / SNAPSHOTS / f"{name}.json"


class EnvironmentView(BaseModel):
    name: str
    state_dir: str
    block: dict[str, Any]  # the Environment block as dumped (no secrets)
    database: dict[str, Any] | None = None  # masked_url, local_cluster
    path: str

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

    # ----------------------------------------------------------------- reading
    @property
    def router_settings(self) -> dict[str, Any]:
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
        target = self.block["target"]
        if self.target_kind == "process":
            from prefect_delivery.blocks.targets.process_records import ProcessRecords

            return ProcessRecords(target["state_dir"]).list(self.name)
        from prefect_delivery.blocks.targets.docker_labels import list_instances

        return list_instances(target, self.name)

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
        return Ledger(self.state_dir, self.name)
