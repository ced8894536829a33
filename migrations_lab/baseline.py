"""Adoption: which revisions the lab judges in full.

A history written before the lab carries no phase annotations. Two cut points, both revision
ids (a unique prefix is enough):

- the *baseline* (setting ``baseline``): revisions up to and including it are **history**:
  planned and round-tripped on the ephemeral PostgreSQL (a history that cannot go up and
  down is a real finding), but not required to declare phases and not linted;
- ``--since REV`` (a change's own revisions): revisions up to and including REV are only
  **upgraded** on the way (no round trip, no lint, no phase rules): the check answers for the
  revisions after REV alone.

Everything after both is judged in full (phase plan, lint, round trip).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.phases import PhasePlan

Judged = Literal["full", "history", "upgraded"]


class Scope(BaseModel):
    baseline: str | None = None
    since: str | None = None
    judged: dict[str, Judged] = Field(default_factory=dict)

    def of(self, revision: str | None) -> Judged:
        return self.judged.get(revision or "", "full")

    def full(self, revision: str | None) -> bool:
        return self.of(revision) == "full"

    @property
    def upgraded(self) -> list[str]:
        return [r for r, j in self.judged.items() if j == "upgraded"]


def resolve_revision(plan: PhasePlan, value: str, where: str) -> str:
    """The revision id ``value`` names (exact or a unique prefix)."""
    ids = [info.revision for info in plan.revisions]
    if value in ids:
        return value
    matches = [r for r in ids if r.startswith(value)]
    if len(matches) == 1:
        return matches[0]
    sample = ", ".join(ids[-5:])
    if matches:
        raise LabConfigError(where, f"{value!r} matches {len(matches)} revisions "
                             f"({', '.join(matches)}).", "give more characters of the id")
    raise LabConfigError(where, f"{value!r} is not a revision of {plan.project}.",
                         f"use a revision id from `alembic history` (latest: {sample})")


def scope(plan: PhasePlan, *, baseline: str | None, baseline_where: str = "baseline",
          since: str | None = None) -> Scope:
    """Which revisions are history, which are only upgraded, which are judged in full."""
    s = Scope()
    order = [info.revision for info in plan.revisions]
    if baseline:
        s.baseline = resolve_revision(plan, baseline, baseline_where)
        for rev in order[: order.index(s.baseline) + 1]:
            s.judged[rev] = "history"
    if since:
        s.since = resolve_revision(plan, since, "--since")
        for rev in order[: order.index(s.since) + 1]:
            s.judged[rev] = "upgraded"
    return s
