"""Checkpoints of a delivery run: which environments this run already finished.

A run that waits for approval with ``suspend_flow_run`` exits and is started again from the
top when someone answers (so is a run retried from the UI). Build and test are once per commit
(and digest) already; this makes the environments before the gate idempotent too: when this
very flow run already deployed and verified the same digest in an environment, the re-run
skips it and reuses what it proved (the staging numbers the approver saw), instead of
deploying again, which could even move that environment backwards if a newer release reached
it in the meantime.

One small JSON file per run and environment, in the environment's state folder.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from prefect_delivery.blocks.paths import atomic_write_json
from prefect_delivery.blocks.release import Release
from prefect_delivery.tasks.approve import UpstreamEvidence


class EnvironmentCheckpoint(BaseModel):
    flow_run_id: str
    environment: str
    commit: str
    digest: str
    status: str  # deployed, already-live
    detail: str = ""
    evidence: UpstreamEvidence
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def checkpoint_path(state_dir: str, flow_run_id: str, environment: str) -> Path:
    return Path(state_dir) / "checkpoints" / f"{flow_run_id}-{environment}.json"


def finished(
    state_dir: str, flow_run_id: str | None, environment: str, release: Release
) -> EnvironmentCheckpoint | None:
    """The checkpoint this run left for the environment, if it was for this very digest."""
    if not flow_run_id:
        return None
    try:
        point = EnvironmentCheckpoint.model_validate_json(
            checkpoint_path(state_dir, flow_run_id, environment).read_text()
        )
    except (OSError, ValueError):
        return None
    if point.digest != release.digest or point.environment != environment:
        return None
    return point


def mark_finished(
    state_dir: str,
    flow_run_id: str | None,
    environment: str,
    release: Release,
    status: str,
    detail: str,
    evidence: UpstreamEvidence,
) -> None:
    if not flow_run_id:
        return
    point = EnvironmentCheckpoint(
        flow_run_id=flow_run_id,
        environment=environment,
        commit=release.commit,
        digest=release.digest,
        status=status,
        detail=detail,
        evidence=evidence,
    )
    atomic_write_json(
        checkpoint_path(state_dir, flow_run_id, environment), point.model_dump(mode="json")
    )


# ---------------------------------------------------------------------------- the run's commit
def _commit_path(state_dir: str, flow_run_id: str) -> Path:
    return Path(state_dir) / "checkpoints" / f"{flow_run_id}-commit.json"


def pinned_commit(state_dir: str, flow_run_id: str | None) -> str | None:
    """The commit this run resolved when it first started (a restarted run delivers that one,
    not whatever ``HEAD`` names now: the approver saw that one)."""
    if not flow_run_id:
        return None
    try:
        return str(json.loads(_commit_path(state_dir, flow_run_id).read_text())["commit"])
    except (OSError, ValueError, KeyError):
        return None


def pin_commit(state_dir: str, flow_run_id: str | None, commit: str, asked: str) -> None:
    if flow_run_id:
        atomic_write_json(_commit_path(state_dir, flow_run_id), {"commit": commit, "asked": asked})
