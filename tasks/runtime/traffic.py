"""Traffic changes of an environment, one at a time, and the preemption a rollback makes.

Every weight change (a rollout's shift, a revert, a break-glass rollback) happens under the
environment's traffic lock: a ``flock`` on ``<state>/locks/<env>.traffic``, held for the
milliseconds of one change, never while waiting for anything else (so nothing deadlocks on it).

A rollback preempts a delivery in progress: before it moves traffic it writes the preemption
marker (``<state>/locks/<env>.preempted``: when, by whom, to which release). A delivery checks
the marker at its next safe point (before its next traffic change, at every interval of an
analysis or a bake); one that started holding the environment before the marker was written
stops there, makes no traffic change, and ends ``Preempted``. Whoever takes the environment's
slot after the marker is not preempted by it. Pure code: no Prefect (the break-glass command
must not wait for it to load).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect_delivery.blocks.errors import VerdictError
from prefect_delivery.blocks.paths import atomic_write_json


class Preempted(VerdictError):
    """A rollback took the environment over; this delivery stops without touching traffic."""


def _locks(state_dir: str) -> Path:
    path = Path(state_dir) / "locks"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def traffic_lock(state_dir: str, environment: str) -> Iterator[None]:
    """Hold the environment's traffic lock for one change."""
    handle = open(_locks(state_dir) / f"{environment}.traffic", "a+")  # noqa: SIM115
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # drops the flock


def preempt(state_dir: str, environment: str, by: str, to: str | None, reason: str) -> dict:
    """Write the preemption marker (call it under the traffic lock, before the change)."""
    marker = {"at": time.time(), "by": by, "to": to, "reason": reason[:300], "pid": os.getpid()}
    atomic_write_json(_locks(state_dir) / f"{environment}.preempted", marker)
    return marker


def preemption(state_dir: str, environment: str, since: float) -> dict[str, Any] | None:
    """The marker, if a rollback wrote it after ``since`` (a wall-clock time)."""
    try:
        marker = json.loads((_locks(state_dir) / f"{environment}.preempted").read_text())
    except (OSError, ValueError):
        return None
    return marker if float(marker.get("at", 0)) > since else None


def preempted_error(environment: str, marker: dict[str, Any]) -> Preempted:
    to = marker.get("to")
    return Preempted(
        f"{environment}: preempted by a rollback ({marker.get('by')}: {marker.get('reason')})"
        + (f" to {to[:19]}" if to else "")
        + " while this delivery was in progress; it stops here and changes no traffic. "
        "Deliver again once the environment is healthy."
    )
