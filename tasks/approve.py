"""Approval stage: the single gate between a verified staging and production.

``auto_approve`` satisfies it and is recorded as such (for demos and trusted pipelines);
otherwise the flow run pauses and waits for a human's ``Approval`` from the Prefect UI or
``delivery approve``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field

from blocks.release import Release
from tasks.log import run_logger

KEY_RE = re.compile(r"[^a-z0-9-]+")


class Approval(RunInput):
    """What the approver fills in on the Resume form."""

    approved: bool = Field(description="Approve this release for the environment?")
    approver: str = Field(description="Who decides (name or handle); recorded with the release.")
    reason: str = Field(description="Why; recorded with the release and shown in its history.")


class ApprovalDecision(BaseModel):
    environment: str
    release: Release
    approved: bool
    approver: str
    reason: str
    decided_at: datetime
    automatic: bool


def approval_key(environment: str, flow_run_id: str) -> str:
    """Pause keys are lowercase letters, digits and dashes: one per environment and run."""
    raw = f"approve-{environment}-{flow_run_id}".lower()
    return KEY_RE.sub("-", raw).strip("-")


def auto_decision(environment: str, release: Release, by: str) -> ApprovalDecision:
    decision = ApprovalDecision(
        environment=environment,
        release=release,
        approved=True,
        approver=by,
        reason="auto_approve=True was passed to the run",
        decided_at=datetime.now(UTC),
        automatic=True,
    )
    run_logger().info("Approval for %s of %s: automatic (auto_approve)", environment, release.label)
    return decision


def approval_description(env_name: str, release: Release, summary_markdown: str) -> str:
    """What the approver sees above the form: what exactly they approve, with the numbers."""
    return (
        f"## Approve {release.service} {release.version} for **{env_name}**?\n\n"
        f"- commit: `{release.commit}`\n"
        f"- digest: `{release.digest}`\n\n"
        f"### The run so far\n\n{summary_markdown}\n"
    )


def request_approval(
    env: Any, release: Release, summary: Any, timeout_s: int, flow_run_id: str
) -> ApprovalDecision:
    """Pause the flow run until a human answers the Approval form, or the timeout passes."""
    logger = run_logger()
    key = approval_key(env.name, flow_run_id)
    form = Approval.with_initial_data(
        description=approval_description(env.name, release, summary.markdown())
    )
    logger.info(
        "Waiting up to %ss for approval of %s in %s (pause key %s); resume the run in the "
        "Prefect UI or run `delivery approve %s --approver NAME --reason TEXT`",
        timeout_s,
        release.label,
        env.name,
        key,
        flow_run_id,
    )
    try:
        answer = pause_flow_run(wait_for_input=form, key=key, timeout=timeout_s)
    except FlowPauseTimeout:
        return ApprovalDecision(
            environment=env.name,
            release=release,
            approved=False,
            approver="(nobody)",
            reason=f"approval timed out after {timeout_s}s without an answer",
            decided_at=datetime.now(UTC),
            automatic=False,
        )
    return ApprovalDecision(
        environment=env.name,
        release=release,
        approved=bool(answer.approved),
        approver=answer.approver,
        reason=answer.reason,
        decided_at=datetime.now(UTC),
        automatic=False,
    )
