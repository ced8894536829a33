"""Schema gates, decided (pure): which release uses what a contract drops, what stops a
contract or a rollback, which revisions are pending, what a rehearsal report refuses.

- contract gate: a contract is not applied while the environment still serves, or keeps warm
  for a rollback, a release that *uses* what the contract drops. A release uses a dropped item
  when its own migrations end before the migrate revision whose ``replaces`` covers the item
  (its code was written before the code moved off it).
- rollback gate: once a contract is applied, the environment does not roll back to a release
  that uses what it dropped; the refusal names the furthest-back release it may return to.

The tasks that read the databases and artifacts and act on these are in tasks/migrate.py.
"""

from __future__ import annotations

from pydantic import BaseModel

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.migrations_lab.phases import PhasePlan, RevisionInfo, covers


class ReleaseSchema(BaseModel):
    """The Alembic project a release carries, as its artifact holds it."""

    label: str
    digest: str
    project: str | None = None  # alembic.ini in the unpacked artifact; None: no migrations
    plan: PhasePlan | None = None

    @property
    def revisions(self) -> list[RevisionInfo]:
        return self.plan.revisions if self.plan else []

    @property
    def order(self) -> list[str]:
        return [r.revision for r in self.revisions]

    @property
    def head(self) -> str | None:
        """The last revision when the history is one line (None: no revisions)."""
        if not self.plan or not self.plan.revisions:
            return None
        return self.plan.heads[0] if len(self.plan.heads) == 1 else self.order[-1]


class Usage(BaseModel):
    """Whether a release's code still uses an item a contract drops, and why."""

    uses: bool
    reason: str
    mover: str | None = None  # the migrate revision that moved the code off the item


def uses_dropped(other: ReleaseSchema, item: str, plan: PhasePlan) -> Usage:
    """Does the release ``other`` use ``item``, given the history ``plan`` of the release that
    drops it? It does when its own migrations end before the migrate revision that moved
    the code off the item (so its code was written against the item)."""
    order = [r.revision for r in plan.revisions]
    movers = [
        r
        for r in plan.revisions
        if r.phase == "migrate" and any(covers(k, item) for k in r.replaces)
    ]
    if other.project is None:
        return Usage(uses=False, reason="it carries no migrations (it uses no schema of ours)")
    if not movers:
        return Usage(
            uses=True,
            reason=f"no migrate revision declares that the code moved off {item} "
            f"(`replaces`), so nothing proves it is unused",
        )
    mover = movers[0].revision
    head = other.head
    if head is None:
        return Usage(uses=False, mover=mover, reason="its migrations hold no revision")
    if head not in order:
        return Usage(
            uses=True,
            mover=mover,
            reason=f"its migrations end at {head}, a revision this history does not contain "
            "(it cannot be placed before or after the migrate)",
        )
    if order.index(head) < order.index(mover):
        return Usage(
            uses=True,
            mover=mover,
            reason=f"its migrations end at {head}, before migrate {mover} moved the code off "
            f"{item}",
        )
    return Usage(
        uses=False, mover=mover, reason=f"its migrations reach {head} (migrate {mover} included)"
    )


class Blocker(BaseModel):
    """One release that stops a contract (or a rollback)."""

    contract: str
    item: str
    release: str  # label
    role: str  # "serves", "keeps warm for rollback", "is the rollback target"
    reason: str


def contract_blockers(
    plan: PhasePlan,
    pending: list[str],
    running: list[tuple[ReleaseSchema, str]],
) -> list[Blocker]:
    """Releases (with their role here) that use what a pending contract drops."""
    contracts = [r for r in plan.revisions if r.revision in pending and r.phase == "contract"]
    blockers: list[Blocker] = []
    for contract in contracts:
        for item in contract.drops:
            for other, role in running:
                usage = uses_dropped(other, item, plan)
                if usage.uses:
                    blockers.append(
                        Blocker(
                            contract=contract.revision,
                            item=item,
                            release=other.label,
                            role=role,
                            reason=usage.reason,
                        )
                    )
    return blockers


def applied_contracts(plan: PhasePlan, at_revision: str | None) -> list[RevisionInfo]:
    """Contract revisions at or before the revision a database is at."""
    if at_revision is None:
        return []
    order = [r.revision for r in plan.revisions]
    if at_revision not in order:
        return []
    return [r for r in plan.revisions[: order.index(at_revision) + 1] if r.phase == "contract"]


def rollback_blockers(
    plan: PhasePlan, at_revision: str | None, target: ReleaseSchema
) -> list[Blocker]:
    """Why the database at ``at_revision`` cannot serve ``target`` (empty: it can)."""
    blockers = []
    for contract in applied_contracts(plan, at_revision):
        for item in contract.drops:
            usage = uses_dropped(target, item, plan)
            if usage.uses:
                blockers.append(
                    Blocker(
                        contract=contract.revision,
                        item=item,
                        release=target.label,
                        role="is the rollback target",
                        reason=usage.reason,
                    )
                )
    return blockers


def describe_phase(plan: PhasePlan, pending: list[str]) -> str | None:
    """``"expand (0002)"``, ``"contract (0004: drops people.name)"``; None: nothing pending."""
    if not pending:
        return None
    infos = [plan.get(rev) for rev in pending]
    phases = list(dict.fromkeys(i.phase or "no phase" for i in infos))
    drops = [d for i in infos for d in i.drops]
    text = " + ".join(phases) + f" ({', '.join(pending)}"
    if drops:
        text += f": drops {', '.join(drops)}"
    return text + ")"


def plan_findings(plan: PhasePlan) -> str:
    return "; ".join(
        f"{f.message} Fix: {f.fix}" if f.fix else f.message for f in plan.findings if f.failing
    )


def pending_from(schema: ReleaseSchema, current: str | None, environment: str) -> list[str]:
    """Revisions after ``current`` up to the release's head (pure)."""
    order = schema.order
    if current is None:
        return order
    if current not in order:
        raise ConfigError(
            f"database of {environment}",
            f"is at revision {current}, which the migrations of {schema.label} do not contain "
            f"(they end at {schema.head or 'nothing'}): the schema is ahead of this release.",
            f"deliver a release whose migrations include {current}; to go back to an older "
            f"release use `delivery rollback {environment} --to <commit>`, which checks the "
            "schema",
        )
    return order[order.index(current) + 1 :]


def rehearsal_problems(report, pending: list[str]) -> list[str]:  # report: LabReport
    """What stops the pending revisions, from a lab report (pure)."""
    problems = [
        f"[{f.check} {f.rule}] {f.message}" + (f" Fix: {f.fix}" if f.fix else "")
        for f in report.findings
        if f.failing
    ]
    for rev in report.revisions:
        if rev.revision not in pending:
            continue
        for f in rev.findings:
            if f.failing:
                # the lab's own (ephemeral) database, not the environment's
                message = f.message.replace("The database is at", "The lab's database is at")
                text = f"[{f.check} {f.rule}] {message}"
                if f.revision is not None and f.revision not in f.message:
                    text += f" (revision {f.revision})"
                problems.append(text + (f" Fix: {f.fix}" if f.fix else ""))
        rt = rev.roundtrip
        if rt is None or rt.status == "skipped":
            problems.append(
                f"revision {rev.revision} ({rev.path}) was not rehearsed"
                + (f": {'; '.join(rt.notes)}" if rt and rt.notes else "")
            )
    for note in report.notes:
        if "skipped" in note:
            problems.append(note)
    return problems
