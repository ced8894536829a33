"""The monitor listener: a monitor's alert rolls the environment back within moments.

``delivery monitor-listen`` runs beside the worker, always on. It subscribes to the Prefect
server's event stream (a websocket: an event arrives in milliseconds) for
``delivery.release.verification-failed`` events with ``delivery.source=monitor``, and for each
one does what a person's ``delivery rollback`` does: the break-glass switch from the
environment's snapshot (tasks/breakglass.py), bound to the digest the alert names, then the
bookkeeping in a process of its own (the ``rollback-record`` flow). What cannot be switched at
once (a retired or short-handed target, a contract since) goes to the rollback flow.

Why a listener and not the deployment trigger alone: a trigger creates a flow run, a worker
polls for it (every 10-15 s by default) and starts a process that imports Prefect and the
project (several seconds here) before anything moves; the listener has all of that behind it
already. The trigger in prefect.yaml stays as the backstop: its run finds the digest no
longer serving and changes nothing.
"""

from __future__ import annotations

import asyncio
import datetime
import threading
from collections.abc import Callable
from typing import Any

from prefect_delivery.blocks.environment_view import EnvironmentView
from prefect_delivery.tasks.breakglass import Switch, break_glass
from prefect_delivery.tasks.runtime.log import run_logger

EVENT = "delivery.release.verification-failed"


def handle(
    event: Any,
    state_dirs: list[str],
    environments: list[str] | None,
    spawn: Callable[[EnvironmentView, Switch, str], object],
    through_flow: Callable[[str, str, str, str], object],
) -> Switch | None:
    """One event: act on a monitor's alert about a service in an environment we serve (None:
    not ours). The alert acts on the service it names only; one that names none is ignored."""
    resource = event.resource
    if resource.get("delivery.source") != "monitor":
        return None
    name = resource.get("delivery.environment")
    if not name or (environments and name not in environments):
        return None
    digest = resource.get("delivery.digest") or ""
    service = resource.get("delivery.service") or ""
    logger = run_logger()
    if not digest or not service:
        logger.warning(
            "%s: a monitor's alert without a %s (event %s); ignored",
            name,
            "digest" if not digest else "service",
            event.id,
        )
        return None
    view = EnvironmentView.recall(name, state_dirs)
    if view is None or service not in view.services():
        logger.warning(
            "%s/%s: no snapshot in %s; the rollback flow decides", name, service, state_dirs
        )
        through_flow(name, service, digest, _reason(event))
        return None
    view = view.for_service(service)
    switch = break_glass(
        view, _reason(event), by=f"monitor listener (event {event.id})", expect_digest=digest
    )
    logger.warning("%s: %s", view.scope, switch.message)
    if switch.status == "switched":
        spawn(view, switch, _reason(event))
    elif switch.status in ("not-warm", "needs-flow"):
        through_flow(name, service, digest, _reason(event))
    return switch


def _reason(event: Any) -> str:
    return f"monitor: {(event.payload or {}).get('reason', 'verification failed')}"


async def _listen(
    state_dirs: list[str],
    environments: list[str] | None,
    spawn,
    through_flow,
    ready: threading.Event | None,
    stop: threading.Event | None,
) -> None:
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    now = datetime.datetime.now(datetime.UTC)
    window = EventOccurredFilter(since=now, until=now + datetime.timedelta(days=3650))
    filter = EventFilter(occurred=window, event=EventNameFilter(name=[EVENT]))
    async with get_events_subscriber(filter=filter, reconnect_on_clean_close=True) as events:
        if ready is not None:
            ready.set()
        async for event in events:
            try:
                handle(event, state_dirs, environments, spawn, through_flow)
            except Exception as exc:  # noqa: BLE001 - one bad event must not stop the listener
                run_logger().error("could not act on event %s: %s", event.id, exc)
            if stop is not None and stop.is_set():
                return


def listen(
    state_dirs: list[str],
    environments: list[str] | None,
    spawn,
    through_flow,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
) -> None:
    asyncio.run(_listen(state_dirs, environments, spawn, through_flow, ready, stop))
