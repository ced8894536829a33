"""Ledger: the history of one service in one environment (which release was deployed,
verified, rolled back there).

What is live is always read from the router and target; the ledger answers what they cannot:
which release was verified before, when, and by which run. Each service keeps its own file,
``<state>/ledger/<environment>/<service>.jsonl``: another service's release is never in it, so
never its baseline, stable release or rollback target. Each line is one JSON event, appended
with O_APPEND (concurrent writers never interleave within a line) and fsynced before the
append returns.

An environment saved before services kept one ledger, ``<state>/ledger/<environment>.jsonl``;
its lines of this service are read first (never written again), so a setup from before keeps
its history.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from prefect_delivery.blocks.release import Release
from prefect_delivery.blocks.secrets import mask_data
from prefect_delivery.blocks.services import legacy_ledger_path

EVENTS = (
    "deployed",
    "verified",
    "baked",
    "rolled-back",
    "retired",
    "failed",
    "approved",
    "rejected",
    "migrated",
    "approval-refused",
    "approval-void",
)


class LedgerEntry(BaseModel):
    at: datetime
    environment: str
    event: str
    release: Release
    run_id: str | None = None
    details: dict[str, Any] = {}


class Ledger:
    def __init__(self, state_dir: str, environment: str, service: str):
        self.environment = environment
        self.service = service
        self.path = Path(state_dir) / "ledger" / environment / f"{service}.jsonl"
        self.legacy_path = legacy_ledger_path(state_dir, environment)

    def append(
        self, event: str, release: Release, run_id: str | None = None, **details: Any
    ) -> LedgerEntry:
        if event not in EVENTS:
            raise ValueError(f"unknown ledger event {event!r}")
        if release.service != self.service:
            raise ValueError(
                f"a release of {release.service!r} cannot be recorded in {self.service!r}'s "
                f"ledger of {self.environment!r}"
            )
        entry = LedgerEntry(
            at=datetime.now(UTC),
            environment=self.environment,
            event=event,
            release=release,
            run_id=run_id,
            details=mask_data(details),
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (entry.model_dump_json() + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def entries(self) -> list[LedgerEntry]:
        """This service's entries, oldest first (those of an old, shared ledger first)."""
        result = [e for e in _read(self.legacy_path) if e.release.service == self.service]
        return result + _read(self.path)

    def verified_releases(self) -> list[Release]:
        """Releases verified here, newest first, minus those rolled back after verification."""
        state: dict[str, tuple[int, str, Release]] = {}
        for index, entry in enumerate(self.entries()):
            if entry.event in ("verified", "rolled-back", "failed"):
                state[entry.release.digest] = (index, entry.event, entry.release)
        good = [item for item in state.values() if item[1] == "verified"]
        return [release for _, _, release in sorted(good, key=lambda i: i[0], reverse=True)]

    def previous_verified(self, current_digest: str | None) -> Release | None:
        for release in self.verified_releases():
            if release.digest != current_digest:
                return release
        return None

    def baked(self, digest: str) -> bool:
        """True when the release passed its bake window since it was last verified here."""
        verified, baked = self.last("verified", digest), self.last("baked", digest)
        return baked is not None and (verified is None or baked.at >= verified.at)

    def last(self, event: str, digest: str | None = None) -> LedgerEntry | None:
        for entry in reversed(self.entries()):
            if entry.event == event and (digest is None or entry.release.digest == digest):
                return entry
        return None


def _read(path: Path) -> list[LedgerEntry]:
    try:
        text = path.read_text()
    except OSError:
        return []
    result = []
    for line in text.splitlines():
        if line.strip():
            try:
                result.append(LedgerEntry.model_validate_json(line))
            except ValueError:
                continue  # a torn last line after a crash
    return result
