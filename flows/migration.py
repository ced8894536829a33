"""Migration flow: bring one environment's database to what a release carries, before its code.

    read the release's migrations (from its artifact) and the database's revision
      -> nothing pending: done
      -> rehearse the pending revisions in the lab (ephemeral PostgreSQL: phase plan, lint,
         round trip)                                   a failure is a verdict: nothing applied
      -> schema gate: no contract while a release that uses what it drops runs or is warm
      -> apply them (lock/statement timeouts, lock-timeout retries), one revision at a time
      -> verify the database reached the release's head
      -> record it (ledger, `migration-<env>` artifact)
    then the delivery flow deploys the code.

Composition only; the steps are tasks in tasks/migrate.py. It runs while the caller holds the
environment's delivery slot. A revision that fails leaves the database at the revision before
it, and the live release keeps serving: its code works with every schema up to the release
being delivered (that is what the expand / migrate / contract split guarantees).
"""

from __future__ import annotations

import time
from typing import Literal

from prefect import flow
from pydantic import BaseModel, Field

from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.errors import DeliveryError
from prefect_delivery.blocks.release import Release
from prefect_delivery.tasks.migrate import (
    Applied,
    AppliedStep,
    GateCheck,
    MigrationPlan,
    Rehearsal,
    apply_migrations,
    plan_migration,
    record_migration,
    rehearse,
    schema_gate,
    verify_schema,
)
from prefect_delivery.tasks.promotion import promotion_gate
from prefect_delivery.tasks.runtime.context import current_run_id
from prefect_delivery.tasks.runtime.log import run_logger

Status = Literal["no-database", "no-migrations", "up-to-date", "applied"]


class MigrationOutcome(BaseModel):
    environment: str
    release: Release
    status: Status
    database: str = ""  # masked URL
    from_revision: str | None = None
    to_revision: str | None = None
    phase: str | None = None
    steps: list[AppliedStep] = Field(default_factory=list)
    rehearsal: Rehearsal | None = None
    gate: GateCheck | None = None
    seconds: float = 0.0

    @property
    def detail(self) -> str:
        if self.status == "applied":
            rehearsal = ""
            if self.rehearsal is not None:
                rehearsal = (
                    ", rehearsal reused"
                    if self.rehearsal.reused
                    else (f", rehearsed {self.rehearsal.seconds:.1f}s")
                )
            return f"{self.phase}: {self.from_revision or 'base'} -> {self.to_revision}{rehearsal}"
        if self.status == "up-to-date":
            return f"schema already at {self.to_revision or 'base'}"
        return self.status


@flow(
    name="migrate",
    flow_run_name="migrate {release.service} {release.version} in {environment}",
)
def migrate(environment: str, release: Release) -> MigrationOutcome:
    """Rehearse, gate, apply and verify the release's pending migrations in its service's
    database in ``environment``."""
    logger = run_logger()
    started = time.perf_counter()
    env = Environment.load(environment).for_service(release.service)
    outcome = MigrationOutcome(environment=env.name, release=release, status="no-database")
    if env.database is None:
        return outcome
    outcome.database = env.database.masked_url
    plan: MigrationPlan = plan_migration(env, release)
    outcome.from_revision = outcome.to_revision = plan.current
    if plan.migrations.plan is None:
        outcome.status = "no-migrations"
        return outcome
    if not plan.pending:
        outcome.status = "up-to-date"
        logger.info("%s: schema already at %s; nothing to migrate", env.name, plan.current)
        return outcome
    outcome.phase = plan.phase
    rehearsal = gate = None
    applying = False
    try:
        promotion_gate(env, release)
        rehearsal = rehearse(env, release, plan)
        gate = schema_gate(env, release, plan)
        applying = True
        applied: Applied = apply_migrations(env, plan)
        outcome.to_revision = verify_schema(env, plan)
    except DeliveryError as exc:
        # refused: stopped before anything touched the database; failed: while applying
        record_migration(
            env,
            release,
            plan,
            "failed" if applying else "refused",
            current_run_id(),
            rehearsal=rehearsal,
            gate=gate,
            failure=str(exc),
            at_revision=_revision_now(env, plan) if applying else plan.current,
        )
        raise
    outcome.status = "applied"
    outcome.steps = applied.steps
    outcome.rehearsal = rehearsal
    outcome.gate = gate
    outcome.seconds = time.perf_counter() - started
    record_migration(env, release, plan, "applied", current_run_id(), applied, rehearsal, gate)
    logger.info(
        "%s: database %s migrated %s -> %s (%s) in %.1fs; deploying the code next",
        env.name,
        outcome.database,
        outcome.from_revision or "base",
        outcome.to_revision,
        outcome.phase,
        outcome.seconds,
    )
    return outcome


def _revision_now(env: Environment, plan: MigrationPlan) -> str | None:
    """Where the database is after a failure (the plan's revision when it cannot be asked)."""
    try:
        return env.database.current_revision(env.name) if env.database else plan.current
    except DeliveryError:
        return plan.current
