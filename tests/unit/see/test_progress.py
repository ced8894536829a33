"""Progress of long waits (tasks/runtime/progress.py): percentages, time left, throttling.

The artifact calls are recorded here (pure logic); tests/integration/see/test_artifacts_live.py
creates them on a real Prefect server and reads them back."""

from __future__ import annotations

import uuid

import pytest

from prefect_delivery.tasks.runtime.progress import (
    WaitProgress,
    approval_gate,
    bake_window,
    canary_step,
)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recorder():
    calls: list[tuple[str, dict]] = []
    ident = uuid.uuid4()

    def create(**kwargs):
        calls.append(("create", kwargs))
        return ident

    def update(**kwargs):
        calls.append(("update", kwargs))

    return calls, create, update, ident


def test_a_wait_goes_from_zero_to_done_with_time_left():
    clock, (calls, create, update, ident) = Clock(), recorder()
    wait = WaitProgress(
        "bake window in production",
        600,
        "progress-bake-production",
        clock=clock,
        create=create,
        update=update,
    ).start()
    assert calls[0] == (
        "create",
        {
            "progress": 0.0,
            "key": "progress-bake-production",
            "description": "bake window in production: 10m 00s left of 10m 00s",
        },
    )
    clock.now += 150
    assert wait.tick() == pytest.approx(25.0)
    kind, args = calls[-1]
    assert kind == "update" and args["artifact_id"] == ident and args["progress"] == 25.0
    assert args["description"] == "bake window in production: 7m 30s left of 10m 00s"
    clock.now += 600
    wait.tick()
    assert calls[-1][1]["progress"] == 100.0
    assert calls[-1][1]["description"] == "bake window in production: done"


def test_ticks_are_throttled():
    clock, (calls, create, update, _) = Clock(), recorder()
    wait = WaitProgress(
        "step", 1000, clock=clock, create=create, update=update, min_step=1.0, min_interval_s=5.0
    ).start()
    for _ in range(20):  # every 0.5 s for 10 s: 0.05% a tick
        clock.now += 0.5
        wait.tick()
    # moved 1% by 10 s and 5 s passed since the last update: one update, not twenty
    assert [c[0] for c in calls] == ["create", "update"]
    assert wait.tick(force=True) == pytest.approx(1.0) and wait.updates == 2


def test_finish_early_says_how_it_ended():
    clock, (calls, create, update, _) = Clock(), recorder()
    wait = approval_gate("production", 3600, clock=clock, create=create, update=update).start()
    assert (
        calls[0][1]["description"] == "approval for production (times out): 1h 00m left of 1h 00m"
    )
    clock.now += 61
    wait.finish("approved by alice")
    assert calls[-1][1]["progress"] == 100.0
    assert calls[-1][1]["description"] == "approval for production (times out): approved by alice"


def test_a_refused_artifact_does_not_stop_the_wait():
    clock = Clock()
    attempts = []

    def create(**kwargs):
        attempts.append(kwargs)
        raise RuntimeError("API unreachable")

    wait = WaitProgress("step", 10, clock=clock, create=create, update=create).start()
    clock.now += 5
    assert wait.tick(force=True) == pytest.approx(50.0)
    wait.finish()
    assert len(attempts) == 1  # one try, then quiet


def test_keys_are_valid_artifact_keys():
    import re

    for wait in (
        canary_step("production", "canary 5%", 30),
        canary_step("staging", "rolling 1/3", 30),
        bake_window("production", 60),
        approval_gate("production", 60),
    ):
        assert re.fullmatch(r"[a-z0-9-]+", wait.key), wait.key
    assert canary_step("production", "canary 5%", 30).key == "progress-production-canary-5pct"


def test_no_duration_is_refused():
    with pytest.raises(ValueError, match="no progress to show"):
        WaitProgress("step", 0)
