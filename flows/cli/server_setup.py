"""``delivery server-setup``: prepare a Prefect server for the pipeline's deployments.

Idempotent; run it once per server (and again after an upgrade):

1. registers the project's block types (what ``prefect block register -m
   prefect_delivery.blocks`` does), so the UI can show and edit Environments, targets, routers
   and artifact stores;
2. creates the work pool the deployments in prefect.yaml use (a process pool by default;
   ``--pool-type docker`` for the Docker option);
3. creates (or replaces, by name) the zombie-run automation: a delivery run whose flow-run
   heartbeats stop without a final state is marked Crashed. Heartbeats come every
   ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (prefect.yaml sets 30 for the deployments);
   the automation waits three of them. A run that ends, or that is *Suspended* (its process
   exits on purpose while a person decides), sends no more heartbeats and is left alone. A
   *Paused* run is not exempt: its process keeps sending heartbeats while it waits, so a
   Paused run that goes quiet has lost its process and would become a zombie the moment
   someone resumed it (Running with nothing running it); it is marked Crashed instead, and
   ``delivery approve`` then says so.

The rollback automations (a monitor's verification-failed event runs ``rollback/<env>``) are
deployment triggers in prefect.yaml, created by ``prefect deploy``.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

DEFAULT_POOL = "delivery-process"
ZOMBIE_AUTOMATION = "delivery: crash runs whose heartbeats stopped"
DELIVERY_TAG = "delivery"
#: Events after which a delivery run may go quiet without being a zombie.
QUIET_AFTER = (
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
    "prefect.flow-run.Suspended",
)


class ServerSetup(BaseModel):
    block_types: list[str]
    work_pool: str
    work_pool_created: bool
    automations: list[str]


def register_block_types() -> list[str]:
    """Register every Block class the blocks package exports (nested ones included)."""
    from prefect.blocks.core import Block

    from prefect_delivery import blocks

    registered = []
    for name in getattr(blocks, "__all__", []):
        cls = getattr(blocks, name, None)
        if isinstance(cls, type) and issubclass(cls, Block):
            cls.register_type_and_schema()
            registered.append(cls.get_block_type_slug())
    return registered


def ensure_work_pool(name: str = DEFAULT_POOL, pool_type: str = "process") -> bool:
    """Create the work pool if it does not exist; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            pool = None
        if pool is not None:
            if pool.type != pool_type:
                from prefect_delivery.blocks.errors import ConfigError

                raise ConfigError(
                    f"work pool {name}",
                    f"exists with type {pool.type!r}, not {pool_type!r}.",
                    "pass --pool with another name, or delete the pool first.",
                )
            return False
        client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type=pool_type,
                base_job_template=_base_job_template(pool_type),
                description="prefect-delivery deployments (see prefect.yaml)",
            )
        )
    return True


def _base_job_template(pool_type: str) -> dict:
    from prefect.workers.base import BaseWorker

    worker = BaseWorker.get_worker_class_from_type(pool_type)
    if worker is None:
        from prefect_delivery.blocks.errors import ConfigError

        raise ConfigError(
            "--pool-type",
            f"{pool_type!r} has no worker installed here.",
            "use 'process' (built in) or 'docker' (prefect-docker, installed with the project).",
        )
    return worker.get_default_base_job_template()


def zombie_automation(
    heartbeat_s: int = 30, tag: str = DELIVERY_TAG, name: str = ZOMBIE_AUTOMATION
):
    """The automation that marks silent delivery runs Crashed (see the module docstring)."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return AutomationCore(
        name=name,
        description=(
            f"A flow run tagged {tag!r} that sent a heartbeat and then nothing for "
            f"{3 * heartbeat_s}s (three heartbeats of {heartbeat_s}s) lost its process: mark "
            "it Crashed. Suspended runs are quiet on purpose and are left alone; Paused runs "
            "keep sending heartbeats while their process waits."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *QUIET_AFTER},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification({"prefect.resource.id": f"prefect.tag.{tag}"}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * heartbeat_s),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"No heartbeat for {3 * heartbeat_s}s: the run's process is gone "
                "(marked Crashed by the prefect-delivery zombie automation).",
            )
        ],
    )


def replace_automation(automation) -> str:
    """Create the automation, deleting any earlier one of the same name first."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(automation.name):
            client.delete_automation(existing.id)
        return str(client.create_automation(automation))


def server_setup(
    pool: str = DEFAULT_POOL, pool_type: str = "process", heartbeat_s: int = 30
) -> ServerSetup:
    types = register_block_types()
    created = ensure_work_pool(pool, pool_type)
    automation_id = replace_automation(zombie_automation(heartbeat_s))
    return ServerSetup(
        block_types=types,
        work_pool=pool,
        work_pool_created=created,
        automations=[f"{ZOMBIE_AUTOMATION} ({automation_id})"],
    )
