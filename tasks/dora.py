"""DORA figures from an environment's ledger (pure: entries in, figures out).

What the pipeline already records is enough; nothing here reads a router, a target or an API.

- A *delivery* is one attempt to put a release into an environment: it starts at the first
  ``deployed`` entry of a digest (more ``deployed`` entries of that digest while it is open
  join it: a rolling rollout launches one instance at a time) and ends ``verified``
  (success) or ``failed`` (the rollout stopped and traffic went back). A delivery that was
  verified and later ``rolled-back`` (a bake breach, a monitor alert, `delivery rollback`)
  counts as a failed change too. A ``verified`` entry whose reason starts ``rollback:`` is a
  rollback target verified again, not a delivery.
- Deployment frequency: verified deliveries per day in the period.
- Lead time for changes: commit time to ``verified`` (the commit time comes from the entries'
  ``committed_at`` detail, else from ``commit_times``, which the caller fills from git).
- Change failure rate: failed or rolled-back deliveries / finished deliveries (a delivery
  still in flight is neither).
- Time to restore: from the failure's record (the moment the ledger learnt of it) to traffic
  on a verified release: the failure record itself when it was a switch to a release verified
  before (a rollout's revert to the stable release, a break-glass switch), else the next
  ``verified`` entry.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from prefect_delivery.blocks.ledger import LedgerEntry

Outcome = Literal["verified", "failed", "rolled-back", "in-flight"]
CommitTimes = Callable[[str], datetime | None] | dict[str, datetime]


class Delivery(BaseModel):
    """One attempt to put a release into one environment."""

    environment: str
    service: str
    version: str
    commit: str
    digest: str
    run_id: str | None = None
    started_at: datetime
    verified_at: datetime | None = None
    failed_at: datetime | None = None  # the failure's record: failed, or rolled-back later
    restored_at: datetime | None = None  # traffic on a verified release again
    committed_at: datetime | None = None
    outcome: Outcome = "in-flight"
    reason: str = ""

    @property
    def lead_time_s(self) -> float | None:
        if self.verified_at is None or self.committed_at is None:
            return None
        return (self.verified_at - self.committed_at).total_seconds()

    @property
    def restore_s(self) -> float | None:
        if self.failed_at is None or self.restored_at is None:
            return None
        return (self.restored_at - self.failed_at).total_seconds()

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "rolled-back")


class Spread(BaseModel):
    """A duration's figures over several deliveries (seconds)."""

    count: int = 0
    median_s: float | None = None
    mean_s: float | None = None
    max_s: float | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        values = sorted(values)
        if not values:
            return cls()
        return cls(
            count=len(values),
            median_s=statistics.median(values),
            mean_s=statistics.fmean(values),
            max_s=values[-1],
        )


class DoraFigures(BaseModel):
    """The four figures for one service in one environment over one period."""

    environment: str
    service: str = ""
    since: datetime
    until: datetime
    deliveries: int = 0  # started in the period
    verified: int = 0
    failed: int = 0  # failed or rolled back (a change failure)
    in_flight: int = 0
    deployments_per_day: float = 0.0
    change_failure_rate: float | None = None  # None: nothing finished in the period
    lead_time: Spread = Field(default_factory=Spread)
    lead_time_unknown: int = 0  # verified deliveries whose commit time is unknown
    time_to_restore: Spread = Field(default_factory=Spread)
    unrestored: int = 0  # failures with no verified release serving since
    details: list[Delivery] = Field(default_factory=list)

    @property
    def days(self) -> float:
        return max((self.until - self.since).total_seconds() / 86400, 1e-9)


def _is_rollback_verification(entry: LedgerEntry) -> bool:
    return str(entry.details.get("reason", "")).startswith("rollback:")


def _committed_at(entry: LedgerEntry) -> datetime | None:
    value = entry.details.get("committed_at")
    if value is None:
        return None
    try:
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        parsed = datetime.fromisoformat(str(value))
    except (ValueError, OverflowError, OSError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _lookup(commit_times: CommitTimes | None, commit: str) -> datetime | None:
    if commit_times is None:
        return None
    found = commit_times.get(commit) if isinstance(commit_times, dict) else commit_times(commit)
    if found is not None and found.tzinfo is None:
        found = found.replace(tzinfo=UTC)
    return found


def deliveries(
    entries: list[LedgerEntry], commit_times: CommitTimes | None = None
) -> list[Delivery]:
    """Every delivery the entries record, oldest first, with its outcome and times."""
    entries = sorted(entries, key=lambda e: e.at)
    found: list[Delivery] = []
    open_by_digest: dict[str, Delivery] = {}  # deployed, not yet verified or failed
    verified_by_digest: dict[str, Delivery] = {}  # verified, not (yet) rolled back
    ever_verified: set[str] = set()  # digests verified here (restore targets)
    waiting: list[Delivery] = []  # failures not restored yet
    for entry in entries:
        digest = entry.release.digest
        if entry.event == "deployed":
            if digest not in open_by_digest:
                delivery = Delivery(
                    environment=entry.environment,
                    service=entry.release.service,
                    version=entry.release.version,
                    commit=entry.release.commit,
                    digest=digest,
                    run_id=entry.run_id,
                    started_at=entry.at,
                    committed_at=_committed_at(entry),
                )
                open_by_digest[digest] = delivery
                found.append(delivery)
        elif entry.event == "verified":
            if not _is_rollback_verification(entry) and digest in open_by_digest:
                delivery = open_by_digest.pop(digest)
                delivery.verified_at = entry.at
                delivery.outcome = "verified"
                delivery.committed_at = delivery.committed_at or _committed_at(entry)
                verified_by_digest[digest] = delivery
            ever_verified.add(digest)
            for failure in waiting:
                failure.restored_at = entry.at
            waiting.clear()
        elif entry.event in ("failed", "rolled-back"):
            reason = str(entry.details.get("reason", ""))
            if entry.event == "failed" and digest in open_by_digest:
                delivery = open_by_digest.pop(digest)
                delivery.outcome = "failed"
            elif entry.event == "rolled-back" and digest in verified_by_digest:
                delivery = verified_by_digest.pop(digest)
                delivery.outcome = "rolled-back"
            else:
                continue  # not a delivery's failure (a rollback target that failed, a repeat)
            delivery.failed_at = entry.at
            delivery.reason = reason[:300]
            to = entry.details.get("to")
            stable_behind = entry.event == "failed" and to is None and ever_verified - {digest}
            if (to and to in ever_verified) or stable_behind:
                delivery.restored_at = entry.at  # the record follows the switch back
            else:
                waiting.append(delivery)
            if entry.event == "rolled-back":
                ever_verified.discard(digest)
    for delivery in found:
        if delivery.committed_at is None:
            delivery.committed_at = _lookup(commit_times, delivery.commit)
    return found


def figures(
    environment: str,
    entries: list[LedgerEntry],
    since: datetime,
    until: datetime,
    commit_times: CommitTimes | None = None,
    service: str | None = None,
) -> DoraFigures:
    """The four figures of ``environment`` (of ``service`` there, when given) for deliveries
    started in [since, until)."""
    if until <= since:
        raise ValueError(f"the period ends ({until}) before it starts ({since})")
    mine = [
        e
        for e in entries
        if e.environment == environment and (service is None or e.release.service == service)
    ]
    chosen = [d for d in deliveries(mine, commit_times) if since <= d.started_at < until]
    verified = [d for d in chosen if d.outcome == "verified" or d.outcome == "rolled-back"]
    failed = [d for d in chosen if d.failed]
    finished = [d for d in chosen if d.outcome != "in-flight"]
    result = DoraFigures(
        environment=environment,
        service=service or "",
        since=since,
        until=until,
        deliveries=len(chosen),
        verified=len(verified),
        failed=len(failed),
        in_flight=len(chosen) - len(finished),
        change_failure_rate=len(failed) / len(finished) if finished else None,
        lead_time=Spread.of(d.lead_time_s for d in verified if d.lead_time_s is not None),
        lead_time_unknown=sum(1 for d in verified if d.lead_time_s is None),
        time_to_restore=Spread.of(d.restore_s for d in failed if d.restore_s is not None),
        unrestored=sum(1 for d in failed if d.restored_at is None),
        details=chosen,
    )
    result.deployments_per_day = len(verified) / result.days
    return result


def period(days: float, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last ``days`` days up to ``now`` (default: this moment)."""
    if not days > 0:
        raise ValueError(f"--since {days!r}: give a number of days greater than 0 (e.g. 30)")
    until = now or datetime.now(UTC)
    return until - timedelta(days=days), until


def duration(seconds: float | None) -> str:
    """``42s``, ``3m 5s``, ``2h 10m``, ``3d 4h`` (``-`` for no value)."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"
