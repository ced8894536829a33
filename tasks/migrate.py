"""Migration stage tasks: read a release's migrations from its artifact, rehearse the pending ones
in the lab, check them against what runs, apply them safely, verify, record.

The migrations a release carries are the Alembic project inside its artifact (the one
``alembic.ini`` in the unpacked wheel; an image release's wheel is ``Artifact.wheel_uri``), so
the pipeline rehearses and applies exactly what the release ships.

The schema gates (contract gate, rollback gate) are decided by the pure functions of
tasks/schema_gates.py; the tasks here read what they need and act on the decisions.

Verdicts (a failed rehearsal, a gate, a revision that fails on the real database) are
``GateFailed`` and never retried; a database that does not answer is an
``InfrastructureError`` (retried); a wrong password or an unreadable history is a
``ConfigError``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from prefect import task
from pydantic import BaseModel, Field

from prefect_delivery.blocks.artifacts import checked_wheel, unpack_wheel
from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.errors import (
    ConfigError,
    DeliveryError,
    GateFailed,
    InfrastructureError,
)
from prefect_delivery.blocks.paths import atomic_write_json
from prefect_delivery.blocks.release import Release
from prefect_delivery.blocks.secrets import mask
from prefect_delivery.migrations_lab.phases import PhasePlan
from prefect_delivery.tasks.runtime.log import run_logger
from prefect_delivery.tasks.runtime.progress import artifact_key
from prefect_delivery.tasks.runtime.report import publish_markdown
from prefect_delivery.tasks.runtime.retry import INFRA_RETRIES
from prefect_delivery.tasks.schema_gates import (
    ReleaseSchema,
    contract_blockers,
    describe_phase,
    pending_from,
    plan_findings,
    rehearsal_problems,
    rollback_blockers,
)


def unpacked(release: Release, state_dir: str) -> Path:
    """The release's artifact unpacked once per digest under the state folder (checked)."""
    dest = Path(state_dir) / "schemas" / release.digest.split(":", 1)[-1][:40]
    if (dest / ".complete").exists():
        return dest
    return unpack_wheel(checked_wheel(release), dest)


def read_schema(release: Release, state_dir: str) -> ReleaseSchema:
    """What migrations a release carries: its phase plan (every revision, phases, heads)."""
    from prefect_delivery.migrations_lab.errors import LabConfigError
    from prefect_delivery.migrations_lab.phases import read_plan
    from prefect_delivery.migrations_lab.project import AlembicProject, find_alembic_ini

    schema = ReleaseSchema(label=release.label, digest=release.digest)
    root = unpacked(release, state_dir)
    try:
        ini = find_alembic_ini(root)
        if ini is None:
            return schema
        schema.project = str(ini)
        schema.plan = read_plan(AlembicProject(ini))
    except LabConfigError as exc:
        raise ConfigError(
            f"migrations of {release.label} ({exc.where})", exc.problem, exc.fix
        ) from None
    return schema


# ---------------------------------------------------------------------------- plan
class MigrationPlan(BaseModel):
    """What applying a release's migrations to one environment's database would do."""

    environment: str
    database: str  # masked URL
    migrations: ReleaseSchema
    current: str | None = None
    pending: list[str] = Field(default_factory=list)

    @property
    def target(self) -> str | None:
        return self.migrations.head

    @property
    def phase(self) -> str | None:
        if self.migrations.plan is None:
            return None
        return describe_phase(self.migrations.plan, self.pending)


@task(name="plan-migration", **INFRA_RETRIES)
def plan_migration(env: Environment, release: Release) -> MigrationPlan:
    """Read the release's migrations from its artifact and the database's revision."""
    logger = run_logger()
    assert env.database is not None
    schema = read_schema(release, env.state_dir)
    result = MigrationPlan(
        environment=env.name, database=env.database.masked_url, migrations=schema
    )
    if schema.plan is None:
        logger.info("%s carries no migrations (no alembic.ini in its artifact)", release.label)
        return result
    if not schema.plan.linear:
        raise GateFailed(
            "migration plan",
            f"the migrations of {release.label} are not one line of history: "
            f"{plan_findings(schema.plan)}",
        )
    result.current = env.database.current_revision(env.name)
    result.pending = pending_from(schema, result.current, env.name)
    logger.info(
        "%s: database %s at %s; %s carries %s; pending: %s",
        env.name,
        env.database.masked_url,
        result.current or "base",
        release.label,
        result.target,
        ", ".join(result.pending) or "nothing",
    )
    return result


def migration_phase(env: Environment, release: Release) -> str | None:
    """For the approval description: the phase of what this release would apply here."""
    if env.database is None:
        return None
    try:
        plan = plan_migration.fn(env, release)
    except DeliveryError as exc:
        return f"unknown ({mask(str(exc))[:160]})"
    return plan.phase


# ---------------------------------------------------------------------------- rehearse
class Rehearsal(BaseModel):
    passed: bool
    reused: bool = False
    seconds: float = 0.0
    summary: str = ""
    report: str = ""  # the lab's readable report


def _rehearsal_record(state_dir: str, digest: str, current: str | None) -> Path:
    return (
        Path(state_dir) / "rehearsals" / f"{digest.split(':', 1)[-1][:40]}-{current or 'base'}.json"
    )


@task(name="rehearse-migrations", **INFRA_RETRIES)
def rehearse(env: Environment, release: Release, plan: MigrationPlan) -> Rehearsal:
    """Phase plan + lint + round trip of the release's migrations on an ephemeral PostgreSQL.

    A pass for this artifact from this starting revision is kept and reused (the rehearsal
    depends on nothing else), so production does not repeat what staging proved."""
    from prefect_delivery.migrations_lab import check, format_report
    from prefect_delivery.migrations_lab.errors import LabConfigError, LabError

    logger = run_logger()
    assert env.database is not None and plan.migrations.project is not None
    record = _rehearsal_record(env.state_dir, release.digest, plan.current)
    try:
        kept = Rehearsal.model_validate(json.loads(record.read_text()))
        if kept.passed:
            kept.reused = True
            logger.info(
                "Rehearsal of %s from %s: passed before, reused",
                release.label,
                plan.current or "base",
            )
            return kept
    except (OSError, ValueError):
        pass
    started = time.monotonic()
    try:
        report = check(
            plan.migrations.project,
            provider=env.database.rehearsal_provider,
            timeouts=env.database.timeouts(),
        )
    except LabConfigError as exc:
        raise ConfigError(exc.where, exc.problem, exc.fix) from None
    except LabError as exc:
        raise InfrastructureError(f"the lab's ephemeral PostgreSQL: {exc}") from None
    text = format_report(report)
    problems = rehearsal_problems(report, plan.pending)
    result = Rehearsal(
        passed=not problems,
        seconds=round(time.monotonic() - started, 2),
        summary=text.splitlines()[-1].removeprefix("result: "),
        report=text,
    )
    if problems:
        logger.error("Rehearsal of %s failed:\n%s", release.label, text)
        raise GateFailed(
            "migration rehearsal",
            f"the migrations of {release.label} failed in the lab (nothing was applied to "
            f"{env.name}'s database): " + " | ".join(problems),
            details={"report": text},
        )
    logger.info(
        "Rehearsal of %s: %s in %.1fs\n%s", release.label, result.summary, result.seconds, text
    )
    atomic_write_json(record, result.model_dump(mode="json"))
    return result


# ---------------------------------------------------------------------------- contract gate
def running_releases(env: Environment, release: Release) -> list[tuple[ReleaseSchema, str]]:
    """Every other release alive here, with its role: serving, or warm for a rollback."""
    live = env.observe()
    roles: dict[str, tuple[Release, str]] = {}
    for li in live.instances:
        other = li.instance.release
        if not li.instance.alive or other.digest == release.digest:
            continue
        role = "serves" if li.weight > 0 else "keeps warm for rollback"
        if roles.get(other.digest, (None, ""))[1] != "serves":
            roles[other.digest] = (other, role)
    return [(read_schema(other, env.state_dir), role) for other, role in roles.values()]


class GateCheck(BaseModel):
    contracts: list[str] = Field(default_factory=list)
    checked: list[str] = Field(default_factory=list)  # "label (role)"


@task(name="schema-gate", **INFRA_RETRIES)
def schema_gate(env: Environment, release: Release, plan: MigrationPlan) -> GateCheck:
    """Refuse a contract while a release that uses what it drops runs here (or is warm)."""
    assert plan.migrations.plan is not None
    contracts = [
        r.revision
        for r in plan.migrations.plan.revisions
        if r.revision in plan.pending and r.phase == "contract"
    ]
    check = GateCheck(contracts=contracts)
    if not contracts:
        return check
    running = running_releases(env, release)
    check.checked = [f"{schema.label} ({role})" for schema, role in running]
    blockers = contract_blockers(plan.migrations.plan, plan.pending, running)
    if blockers:
        lines = [
            f"{env.name} {b.role} {b.release}, which uses {b.item} (dropped by contract "
            f"{b.contract}): {b.reason}"
            for b in blockers
        ]
        raise GateFailed(
            "schema gate",
            f"refusing to apply contract {', '.join(contracts)} of {release.label} to "
            f"{env.name}'s database: " + "; ".join(lines) + ". Nothing was applied and nothing "
            "live changed. Fix: deliver the release that carries the migrate first (so the "
            "live release no longer uses it), and retire a warm release that still uses it "
            f"(`delivery retire {env.name} <commit>`), then deliver this release again.",
            details={"blockers": [b.model_dump() for b in blockers]},
        )
    run_logger().info(
        "Schema gate for contract %s in %s: passed (checked %s)",
        ", ".join(contracts),
        env.name,
        ", ".join(check.checked) or "no other release running",
    )
    return check


# ---------------------------------------------------------------------------- apply, verify
class AppliedStep(BaseModel):
    revision: str
    phase: str | None
    release: str
    attempts: int
    seconds: float


class Applied(BaseModel):
    from_revision: str | None
    to_revision: str | None
    steps: list[AppliedStep] = Field(default_factory=list)
    seconds: float = 0.0


@task(name="apply-migrations", **INFRA_RETRIES)
def apply_migrations(env: Environment, plan: MigrationPlan) -> Applied:
    """Apply the pending revisions one by one (lock/statement timeouts, lock-timeout retries).

    A revision that fails is rolled back by PostgreSQL: the database stays at the revision
    before it (verified by the lab), the live release keeps serving on it."""
    from prefect_delivery.migrations_lab import apply_pending
    from prefect_delivery.migrations_lab.errors import (
        DatabaseUnavailable,
        LabConfigError,
        MigrationFailed,
    )

    logger = run_logger()
    db = env.database
    history = plan.migrations.plan
    assert db is not None and plan.migrations.project is not None and history is not None
    started = time.monotonic()
    db.ensure_started()
    try:
        result = apply_pending(
            plan.migrations.project,
            db.secret_url(),
            plan.target or "head",
            timeouts=db.timeouts(),
            retry=db.retry_policy(),
        )
    except MigrationFailed as exc:
        raise GateFailed(
            "migration",
            f"{env.name}: {mask(exc.where)}: {mask(exc.problem)} The code of "
            f"{plan.migrations.label} was not deployed; the live release keeps serving."
            + (f" Fix: {exc.fix}." if exc.fix else ""),
            details={"revision": exc.revision, "at_revision": exc.at_revision},
        ) from None
    except (DatabaseUnavailable, LabConfigError) as exc:
        raise db.error(exc, env.name) from None
    infos = {r.revision: r for r in history.revisions}
    applied = Applied(
        from_revision=result.from_revision,
        to_revision=result.to_revision,
        steps=[
            AppliedStep(
                revision=s.revision,
                phase=infos[s.revision].phase,
                release=infos[s.revision].release,
                attempts=s.attempts,
                seconds=s.seconds,
            )
            for s in result.steps
        ],
        seconds=round(time.monotonic() - started, 3),
    )
    for step in applied.steps:
        logger.info(
            "%s: applied %s (%s, release %s) in %.2fs%s",
            env.name,
            step.revision,
            step.phase,
            step.release,
            step.seconds,
            f" after {step.attempts} attempts" if step.attempts > 1 else "",
        )
    return applied


@task(name="verify-schema", **INFRA_RETRIES)
def verify_schema(env: Environment, plan: MigrationPlan) -> str | None:
    """The database must be at the release's head now."""
    assert env.database is not None
    at = env.database.current_revision(env.name)
    if at != plan.target:
        raise GateFailed(
            "schema verification",
            f"{env.name}'s database is at {at or 'base'} after applying, expected "
            f"{plan.target}; the code of {plan.migrations.label} was not deployed.",
        )
    return at


# ---------------------------------------------------------------------------- record
def migration_markdown(
    env_name: str,
    release: Release,
    plan: MigrationPlan,
    status: str,
    applied: Applied | None = None,
    rehearsal: Rehearsal | None = None,
    gate: GateCheck | None = None,
    failure: str = "",
) -> str:
    text = (
        f"# Migration of `{release.label}` in {env_name}: **{status}**\n\n"
        f"- database: `{plan.database}`\n"
        f"- from revision `{plan.current or 'base'}` to `{plan.target or 'base'}` "
        f"({plan.phase or 'nothing pending'})\n"
    )
    if rehearsal is not None:
        how = (
            "reused (this artifact passed from this revision before)"
            if rehearsal.reused
            else (f"{rehearsal.seconds:.1f}s")
        )
        text += f"- rehearsal in the lab: {rehearsal.summary}, {how}\n"
    if gate is not None and gate.contracts:
        text += (
            f"- contract gate ({', '.join(gate.contracts)}): passed; checked "
            f"{', '.join(gate.checked) or 'no other release running'}\n"
        )
    if failure:
        text += f"\n> {failure[:600]}\n"
    if applied is not None and applied.steps:
        rows = "\n".join(
            f"| {s.revision} | {s.phase} | {s.release} | {s.attempts} | {s.seconds:.2f}s |"
            for s in applied.steps
        )
        text += (
            "\n| revision | phase | release | attempts | time |\n|---|---|---|---|---|\n"
            + rows
            + "\n"
        )
    return mask(text)


def record_migration(
    env: Environment,
    release: Release,
    plan: MigrationPlan,
    status: Literal["applied", "failed", "refused"],
    run_id: str | None,
    applied: Applied | None = None,
    rehearsal: Rehearsal | None = None,
    gate: GateCheck | None = None,
    failure: str = "",
    at_revision: str | None = None,
) -> None:
    """The ledger entry and a markdown artifact (``migration-<env>``) of what happened."""
    env.ledger().append(
        "migrated",
        release,
        run_id,
        status=status,
        database=plan.database,
        from_revision=plan.current,
        to_revision=applied.to_revision if applied else (at_revision or plan.current),
        target=plan.target,
        phase=plan.phase,
        revisions=[s.model_dump() for s in applied.steps] if applied else [],
        pending=plan.pending,
        reason=mask(failure)[:500] if failure else None,
    )
    try:
        publish_markdown(
            markdown=migration_markdown(
                env.name, release, plan, status, applied, rehearsal, gate, failure
            ),
            key=artifact_key("migration", env.scope),
            description=f"Migration of {release.label} in {env.name}: {status}",
        )
    except Exception as exc:  # noqa: BLE001 - an artifact is a record, not a gate
        run_logger().warning("could not publish the migration artifact: %s", exc)


# ---------------------------------------------------------------------------- rollback gate
def last_applied(env: Environment) -> str | None:
    """The revision the ledger last saw the database at (when the database cannot be asked)."""
    entry = env.ledger().last("migrated")
    return (
        str(entry.details.get("to_revision"))
        if entry and entry.details.get("to_revision")
        else None
    )


@task(name="schema-gate-rollback", **INFRA_RETRIES)
def rollback_gate(env: Environment, current: Release | None, target: Release) -> str | None:
    """Refuse to roll back to a release that uses what an applied contract dropped.

    Returns the database revision it checked against (None: nothing to check)."""
    logger = run_logger()
    if env.database is None:
        return None
    target_schema = read_schema(target, env.state_dir)
    if target_schema.plan is None:
        return None
    try:
        at = env.database.current_revision(env.name)
    except InfrastructureError as exc:
        at = last_applied(env)
        logger.warning("%s; checking the rollback against the ledger's revision %s", exc, at)
    if at is None:
        return None
    candidates = [r for r in ([current] if current else []) + env.ledger().verified_releases()]
    history: PhasePlan | None = None
    for release in [*candidates, target]:
        schema = (
            target_schema
            if release.digest == target.digest
            else read_schema(release, env.state_dir)
        )
        if schema.plan is not None and at in schema.order:
            history = schema.plan
            break
    if history is None:
        raise GateFailed(
            "schema gate",
            f"{env.name}'s database is at revision {at}, which none of the releases verified "
            f"there carries; cannot tell whether {target.label} works with it. Nothing changed.",
        )
    blockers = rollback_blockers(history, at, target_schema)
    if not blockers:
        logger.info(
            "Schema gate for the rollback of %s to %s: passed (database at %s)",
            env.name,
            target.label,
            at,
        )
        return at
    safe = furthest_safe(env, current, history, at)
    where = (
        f"the furthest back {env.name} may roll back is {safe.label} "
        f"(`delivery rollback {env.name} --to {safe.commit[:12]}`)"
        if safe is not None
        else f"no release verified in {env.name} before the current one works with this schema"
        "; fix forward instead"
    )
    reasons = "; ".join(
        f"contract {b.contract} (applied: the database is at {at}) dropped {b.item}, which "
        f"{target.label} still uses: {b.reason}"
        for b in blockers
    )
    raise GateFailed(
        "schema gate",
        f"refusing to roll back {env.name} to {target.label}: {reasons}. {where}. Nothing changed.",
        details={
            "blockers": [b.model_dump() for b in blockers],
            "safe": safe.digest if safe else None,
        },
    )


def furthest_safe(
    env: Environment, current: Release | None, history: PhasePlan, at: str
) -> Release | None:
    """The oldest release verified here, newer than any that needs the dropped schema."""
    safe = None
    for release in env.ledger().verified_releases():  # newest first
        if current is not None and release.digest == current.digest:
            continue
        try:
            schema = read_schema(release, env.state_dir)
        except DeliveryError:
            break
        if rollback_blockers(history, at, schema):
            break
        safe = release
    return safe
