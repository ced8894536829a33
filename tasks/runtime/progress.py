"""Progress artifacts for long waits: a canary step, the bake window, an approval gate.

A :class:`WaitProgress` is one Prefect progress artifact (the UI shows it as "Progress: N%" on
the run's Artifacts tab) whose description says what is being waited for and how much time is
left. The waiting code calls :meth:`WaitProgress.tick` as often as it likes: the artifact is
updated only when the shown percentage moves by ``min_step`` or ``min_interval_s`` has passed,
so a loop that looks every half second does not flood the API. A progress artifact is a
record, not a gate: if the API refuses one, the wait goes on (one warning, no more calls).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from prefect_delivery.blocks.secrets import mask
from prefect_delivery.tasks.runtime.log import run_logger


def _remaining(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


class WaitProgress:
    """One long wait of ``total_s`` seconds, shown as a progress artifact."""

    def __init__(
        self,
        what: str,
        total_s: float,
        key: str | None = None,
        *,
        min_step: float = 1.0,
        min_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        create: Callable[..., UUID] | None = None,
        update: Callable[..., object] | None = None,
    ):
        if not total_s > 0:
            raise ValueError(f"a wait of {total_s!r}s has no progress to show; give > 0")
        self.what, self.total_s, self.key = what, float(total_s), key
        self.min_step, self.min_interval_s = min_step, min_interval_s
        self._clock = clock
        self._create, self._update = create, update
        self.started = clock()
        self.artifact_id: UUID | None = None
        self.shown: float | None = None
        self._shown_at = self.started
        self._broken = False
        self.updates = 0

    # ----------------------------------------------------------------- reading
    def elapsed(self) -> float:
        return self._clock() - self.started

    def percent(self) -> float:
        return min(100.0, max(0.0, 100.0 * self.elapsed() / self.total_s))

    def describe(self, note: str = "") -> str:
        left = self.total_s - self.elapsed()
        text = (
            f"{self.what}: {_remaining(left)} left of {_remaining(self.total_s)}"
            if left > 0
            else f"{self.what}: done"
        )
        return mask(text + (f" ({note})" if note else ""))

    # ----------------------------------------------------------------- writing
    def _call(self, fn: Callable[..., object], **kwargs) -> object | None:
        if self._broken:
            return None
        try:
            return fn(**kwargs)
        except Exception as exc:  # noqa: BLE001 - a record, not a gate
            self._broken = True
            run_logger().warning("progress of %s not published: %s", self.what, exc)
            return None

    def start(self, note: str = "") -> WaitProgress:
        create = self._create
        if create is None:
            from prefect.artifacts import create_progress_artifact as create
        self.artifact_id = self._call(  # type: ignore[assignment]
            create, progress=0.0, key=self.key, description=self.describe(note)
        )
        self.shown, self._shown_at = 0.0, self._clock()
        return self

    def tick(self, note: str = "", force: bool = False) -> float:
        """Update the artifact if the percentage moved enough (or ``force``); returns it."""
        value = self.percent()
        if self.artifact_id is None:
            return value
        moved = self.shown is None or abs(value - self.shown) >= self.min_step
        stale = self._clock() - self._shown_at >= self.min_interval_s
        if force or (moved and stale) or (value >= 100 and self.shown != 100):
            update = self._update
            if update is None:
                from prefect.artifacts import update_progress_artifact as update
            self._call(
                update,
                artifact_id=self.artifact_id,
                progress=round(value, 1),
                description=self.describe(note),
            )
            self.shown, self._shown_at = round(value, 1), self._clock()
            self.updates += 1
        return value

    def finish(self, note: str = "") -> None:
        """The wait ended (early or not): show 100% and how it ended."""
        if self.artifact_id is None:
            return
        update = self._update
        if update is None:
            from prefect.artifacts import update_progress_artifact as update
        self._call(
            update,
            artifact_id=self.artifact_id,
            progress=100.0,
            description=mask(f"{self.what}: {note or 'done'}"),
        )
        self.shown = 100.0
        self.updates += 1


def artifact_key(*parts: str) -> str:
    """An artifact key (lowercase letters, digits, dashes) from free text: 'staging/hello-service'
    and '5% canary' become 'staging-hello-service' and '5pct-canary'."""
    key = "-".join(parts).lower()
    for old, new in ((" ", "-"), ("%", "pct"), ("/", "-"), (".", "-")):
        key = key.replace(old, new)
    return "".join(c for c in key if c.isascii() and (c.isalnum() or c == "-"))


def canary_step(where: str, label: str, window_s: float, **kwargs) -> WaitProgress:
    """A canary (or rolling) step's analysis window (``where``: 'environment/service')."""
    key = artifact_key("progress", where, label.replace("/", "-of-"))
    return WaitProgress(f"{label} in {where}", window_s, key, **kwargs)


def bake_window(where: str, bake_s: float, **kwargs) -> WaitProgress:
    return WaitProgress(
        f"bake window in {where}", bake_s, artifact_key("progress-bake", where), **kwargs
    )


def approval_gate(where: str, timeout_s: float, **kwargs) -> WaitProgress:
    """An approval gate: the description counts down to its timeout."""
    return WaitProgress(
        f"approval for {where} (times out)",
        timeout_s,
        artifact_key("progress-approval", where),
        **kwargs,
    )
