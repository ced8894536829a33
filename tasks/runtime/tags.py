"""The service a run delivers, as a tag the Prefect UI filters by (``service:<name>``).

A delivery's flow run is created before it knows its service (the manifest at the commit names
it), so the tag is added to the run once it does; the runs it starts (deploy, migration) are
created inside ``service_tags`` and carry it from the start. A tag is a record, not a gate:
failing to add one is a warning.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from uuid import UUID

from prefect_delivery.tasks.runtime.log import run_logger


def service_tag(service: str) -> str:
    return f"service:{service}"


def tag_run(flow_run_id: str | None, service: str) -> None:
    """Add ``service:<name>`` to the flow run's tags (a no-op outside a run)."""
    if not flow_run_id:
        return
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(flow_run_id))
            tags = sorted({*(run.tags or []), service_tag(service)})
            if tags != sorted(run.tags or []):
                client.update_flow_run(UUID(flow_run_id), tags=tags)
    except Exception as exc:  # noqa: BLE001 - a tag is a record, not a gate
        run_logger().warning("could not tag the run with its service %s: %s", service, exc)


def service_tags(service: str) -> AbstractContextManager:
    """Runs started inside carry ``service:<name>`` (Prefect's tags context)."""
    from prefect import tags

    return tags(service_tag(service))
