"""The records and processes of a ProcessTarget's instances: pure code, no Prefect.

Each instance leaves a small JSON record beside it (its labels: service, environment, release,
slot, pid and the pid's start time); ``list`` joins those records with /proc, so a pid that was
reused by another program is not mistaken for ours. The ProcessTarget Block starts instances
and hands this out (``records()``); the commands that must answer at once read it directly.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from prefect_delivery.blocks.errors import InfrastructureError
from prefect_delivery.blocks.paths import pid_alive, process_start_ticks
from prefect_delivery.blocks.ports import describe_pids, end_lease, listener_pids, session_of
from prefect_delivery.blocks.release import Instance

PENDING = "pending"  # handle of an instance whose process is being started


def find_process(instance_id: str) -> int | None:
    """The pid of the process started for ``instance_id`` (found by its environment)."""
    marker = f"DELIVERY_INSTANCE={instance_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0"):
            return int(entry.name)
    return None


class ProcessRecords:
    """Instance records under ``<state_dir>/instances/<environment>``."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir

    def instances_dir(self, environment: str) -> Path:
        return Path(self.state_dir) / "instances" / environment

    @staticmethod
    def _pid(instance: Instance) -> tuple[int, int | None]:
        if instance.handle == PENDING:
            pid = find_process(instance.id)
            return (pid or 0), (process_start_ticks(pid) if pid else None)
        pid, _, ticks = instance.handle.partition(":")
        return int(pid), int(ticks) if ticks and ticks != "None" else None

    def _is_alive(self, instance: Instance) -> bool:
        pid, ticks = self._pid(instance)
        if not pid or not pid_alive(pid):
            return False
        return ticks is None or process_start_ticks(pid) == ticks

    def list(self, environment: str) -> list[Instance]:
        folder = self.instances_dir(environment)
        result = []
        for record in sorted(folder.glob("*.json")) if folder.exists() else []:
            try:
                instance = Instance.model_validate(json.loads(record.read_text()))
            except (OSError, ValueError):
                continue
            instance.alive = self._is_alive(instance)
            result.append(instance)
        return result

    def confirm(self, instance: Instance) -> None:
        """The instance itself listens on its port (a process of its session holds the
        listening socket); then its port's lease ends (the bound socket keeps it taken).
        Raises, naming what holds the port, when another program answers there."""
        pid, _ = self._pid(instance)
        holders = listener_pids(instance.port)
        ours = {p for p in holders if p == pid or session_of(p) == pid}
        if not ours:
            raise InfrastructureError(
                f"port {instance.port} of instance {instance.id} is not its own: "
                f"{describe_pids(holders)}, not the instance (pid {pid})"
            )
        end_lease(instance.id)

    def stop(self, instance: Instance, timeout_s: float = 10.0) -> None:
        if self._is_alive(instance):
            pid, _ = self._pid(instance)
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout_s
            while self._is_alive(instance) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._is_alive(instance):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                while self._is_alive(instance) and time.monotonic() < deadline + 5:
                    time.sleep(0.05)
        folder = self.instances_dir(instance.environment)
        (folder / f"{instance.id}.json").unlink(missing_ok=True)

    def logs(self, instance: Instance, lines: int = 20) -> str:
        path = self.instances_dir(instance.environment) / f"{instance.id}.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
