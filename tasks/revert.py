"""Revert: the one way traffic goes back to a release that was verified.

Every rollback (a failed rollout step, a breached bake, an on-demand or monitor rollback) ends
here: all traffic to the instances of the release returned to, in one weight change; the
instances of the release left retired; one ledger line; one ``rolled-back`` event. Each of those
is a retryable step, not a Prefect transaction (which rolls back nothing after a crash), and a
re-run that finds traffic already moved applies the same weights again, which changes nothing.
"""

from __future__ import annotations

from typing import Literal

from prefect import task
from pydantic import BaseModel, Field

from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.tasks.deploy import restore, retire
from prefect_delivery.tasks.runtime import events
from prefect_delivery.tasks.runtime.context import current_run_id
from prefect_delivery.tasks.runtime.log import run_logger
from prefect_delivery.tasks.runtime.retry import INFRA_RETRIES


class Reverted(BaseModel):
    environment: str
    left: Release | None
    to: Release | None
    switch_ms: float = 0.0
    retired: list[str] = Field(default_factory=list)


@task(name="revert", **INFRA_RETRIES)
def revert(
    env: Environment,
    left: Release | None,
    to_instances: list[Instance],
    from_instances: list[Instance],
    reason: str,
    *,
    to: Release | None = None,
    record_as: Literal["rolled-back", "failed"] = "rolled-back",
    source: events.Source = "pipeline",
) -> Reverted:
    """Traffic to ``to_instances``, ``from_instances`` retired, the ledger and an event.

    ``left`` is the release traffic leaves (recorded as ``record_as``: ``failed`` for a
    rollout that never finished, ``rolled-back`` for one that had been verified); ``to`` is
    the release it returns to (None: the stable release of an unfinished rollout).
    """
    change = restore.fn(env, to_instances, from_instances)
    retired = retire.fn(env, from_instances)
    if left is not None:
        env.ledger().append(
            record_as,
            left,
            current_run_id(),
            reason=reason[:500],
            to=to.digest if to is not None else None,
        )
    events.rolled_back(env.name, left, reason[:300], to=to, source=source)
    run_logger().warning(
        "%s: traffic back on %s in %.1fms (%s); %d instance(s) of %s retired",
        env.name,
        to.label if to is not None else "the stable release",
        change.took_ms,
        reason[:200],
        retired,
        left.label if left is not None else "nothing",
    )
    return Reverted(
        environment=env.name,
        left=left,
        to=to,
        switch_ms=change.took_ms,
        retired=[i.id for i in from_instances],
    )
