"""Test results kept per commit and digest: a passing suite is not run twice for one release.

The build runs once per commit (the ArtifactStore reuses the artifact); the test stage follows
the same rule. When the suite passed for a commit against the artifact with a given digest, the
report is written beside the artifact; a later run of the same commit and digest (a re-run, or
a suspended run that Prefect restarts from the top after an approval) reuses that verdict
instead of running the suite again. A failing or empty suite is never recorded: the next run
judges again. The key is the commit *and* the digest, so a rebuilt artifact is tested again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from prefect_delivery.blocks.paths import atomic_write_json
from prefect_delivery.blocks.release import Release
from prefect_delivery.tasks.test import SuiteReport


class PassedSuite(BaseModel):
    commit: str
    digest: str
    report: SuiteReport
    recorded_at: datetime
    run_id: str | None = None


def record_path(store_root: str, release: Release) -> Path:
    digest = release.digest.split(":", 1)[-1]
    return Path(store_root) / release.service / "tests" / f"{release.commit}-{digest}.json"


def passed_before(store_root: str, release: Release) -> PassedSuite | None:
    """The passing report recorded for exactly this commit and digest, if any."""
    path = record_path(store_root, release)
    try:
        record = PassedSuite.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    if record.commit != release.commit or record.digest != release.digest or not record.report.ok:
        return None
    return record


def record_pass(
    store_root: str, release: Release, report: SuiteReport, run_id: str | None = None
) -> None:
    """Keep a passing report for this commit and digest (never a failing one)."""
    if not report.ok:
        return
    record = PassedSuite(
        commit=release.commit,
        digest=release.digest,
        report=report,
        recorded_at=datetime.now(UTC),
        run_id=run_id,
    )
    atomic_write_json(record_path(store_root, release), record.model_dump(mode="json"))
