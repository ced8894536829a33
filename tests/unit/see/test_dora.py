"""DORA figures from hand-built ledgers (tasks/dora.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from support.factories import release

from prefect_delivery.blocks.ledger import LedgerEntry
from prefect_delivery.tasks.dora import deliveries, duration, figures, period

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
A, B, C, D = release(1), release(2), release(3), release(4)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def entry(minutes: float, event: str, rel, env: str = "production", **details) -> LedgerEntry:
    return LedgerEntry(
        at=at(minutes), environment=env, event=event, release=rel, run_id="r", details=details
    )


def history() -> list[LedgerEntry]:
    """A verified; B verified then rolled back by the bake (to A); C's canary failed (stable A
    behind it); D in flight. Staging entries are mixed in and must not count."""
    return [
        entry(0, "deployed", A),
        entry(5, "verified", A, previous=None),
        entry(6, "deployed", A, env="staging"),
        entry(7, "verified", A, env="staging"),
        entry(60, "deployed", B),
        entry(70, "verified", B, previous=A.digest),
        entry(100, "rolled-back", B, reason="bake window: 5xx", to=A.digest),
        entry(200, "deployed", C),
        entry(201, "deployed", C),  # a rolling rollout's second launch joins the delivery
        entry(210, "failed", C, reason="analysis: canary 5% Failed"),
        entry(300, "deployed", D),
    ]


def test_deliveries_are_grouped_and_their_outcomes_read():
    found = deliveries([e for e in history() if e.environment == "production"])
    assert [(d.version, d.outcome) for d in found] == [
        (A.version, "verified"),
        (B.version, "rolled-back"),
        (C.version, "failed"),
        (D.version, "in-flight"),
    ]
    b = found[1]
    assert b.verified_at == at(70) and b.failed_at == at(100)
    assert b.restored_at == at(100)  # the record follows the switch back to verified A


def test_the_four_figures():
    commits = {A.commit: at(-60), B.commit: at(40), C.commit: at(190), D.commit: at(290)}
    f = figures("production", history(), at(-1), at(24 * 60 - 1), commits)
    assert (f.deliveries, f.verified, f.failed, f.in_flight) == (4, 2, 2, 1)
    assert f.deployments_per_day == pytest.approx(2.0)  # A and B reached verified in one day
    assert f.change_failure_rate == pytest.approx(2 / 3)  # B rolled back, C failed; D open
    # lead times: A 65 min, B 30 min
    assert f.lead_time.count == 2 and f.lead_time.median_s == pytest.approx(47.5 * 60)
    assert f.lead_time.max_s == pytest.approx(65 * 60)
    assert f.time_to_restore.count == 2 and f.unrestored == 0


def test_restore_waits_for_the_next_verified_release():
    """No verified release to go back to: restored only when a verified one serves again
    (here the rollback flow's re-verification of A after a failed switch)."""
    entries = [
        entry(0, "deployed", A),
        entry(5, "verified", A),
        entry(10, "deployed", B),
        entry(15, "verified", B),
        entry(20, "rolled-back", B, reason="monitor: 5xx"),  # `to` unknown
        entry(23, "verified", A, reason="rollback: monitor: 5xx"),
    ]
    f = figures("production", entries, at(-1), at(60))
    assert f.failed == 1 and f.time_to_restore.median_s == pytest.approx(180)
    # the rollback's re-verification of A is not a delivery of its own
    assert f.deliveries == 2 and f.verified == 2


def test_a_first_release_that_fails_has_nothing_to_restore_to_until_one_is_verified():
    entries = [entry(0, "deployed", A), entry(3, "failed", A, reason="verification")]
    f = figures("production", entries, at(-1), at(60))
    assert f.failed == 1 and f.unrestored == 1 and f.time_to_restore.count == 0
    assert f.change_failure_rate == 1.0


def test_commit_time_recorded_in_the_ledger_wins_over_the_lookup():
    entries = [
        entry(0, "deployed", A, committed_at=at(-10).isoformat()),
        entry(5, "verified", A),
    ]
    f = figures("production", entries, at(-1), at(60), lambda commit: at(-1000))
    assert f.lead_time.median_s == pytest.approx(15 * 60)


def test_unknown_commit_times_are_counted_not_guessed():
    f = figures("production", history(), at(-1), at(1000), lambda commit: None)
    assert f.lead_time.count == 0 and f.lead_time_unknown == 2


def test_the_period_selects_deliveries_by_their_start():
    f = figures("production", history(), at(150), at(400))
    assert (f.deliveries, f.failed, f.in_flight) == (2, 1, 1)  # C and D
    assert f.deployments_per_day == 0.0
    assert f.change_failure_rate == 1.0


def test_nothing_finished_gives_no_rate():
    f = figures("production", [entry(0, "deployed", A)], at(-1), at(10))
    assert f.change_failure_rate is None and f.in_flight == 1


def test_bad_periods_are_refused():
    with pytest.raises(ValueError, match="greater than 0"):
        period(0)
    with pytest.raises(ValueError, match="before it starts"):
        figures("production", [], at(10), at(0))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (4.25, "4.2s"),
        (42, "42s"),
        (185, "3m 5s"),
        (7800, "2h 10m"),
        (3 * 86400 + 4 * 3600, "3d 4h"),
    ],
)
def test_duration(seconds, text):
    assert duration(seconds) == text
