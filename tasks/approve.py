"""Approval stage: the single gate between a verified staging and production.

``auto_approve`` satisfies it and is recorded as such (for demos and trusted pipelines);
otherwise the flow run waits for a human's ``Approval`` from the Prefect UI (Resume on the
paused run) or from ``delivery approve`` / ``delivery reject``:

- ``mode="pause"`` (default): ``pause_flow_run``; the run's process waits (and keeps sending
  heartbeats) until the answer or the timeout.
- ``mode="suspend"``: ``suspend_flow_run``; the process exits and no infrastructure is held
  while a person decides; on resume Prefect starts the run again from the top and the flow
  reaches this gate again, where the already-fired pause key returns the answer at once.
  Everything before the gate is idempotent for that (see flows/delivery.py).

The pause key is one per environment and run (``approve-<env>-<run id>``); ``delivery
approve`` uses it to tell an approval gate from any other pause. Every decision (approved,
rejected, timed out, automatic) is recorded in the environment's ledger, as a markdown
artifact (``approval-<env>-<service>``) and as a ``delivery.release.approval-decided`` event.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from prefect.input import RunInput
from pydantic import BaseModel, Field

from prefect_delivery.blocks.release import Release
from prefect_delivery.tasks.analysis import Verdict
from prefect_delivery.tasks.runtime import events
from prefect_delivery.tasks.runtime.log import run_logger
from prefect_delivery.tasks.runtime.progress import approval_gate, artifact_key
from prefect_delivery.tasks.runtime.report import publish_markdown

KEY_RE = re.compile(r"[^a-z0-9-]+")
KEY_PREFIX = "approve-"
UUID_TAIL = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
Mode = Literal["pause", "suspend"]
DecisionKind = Literal["approved", "rejected", "timed-out", "automatic"]


class Approval(RunInput):
    """What the approver fills in on the Resume form. ``commit`` and ``digest`` come filled in
    with the release the form was shown for; an answer that names another one approves
    nothing."""

    approved: bool = Field(
        default=False,
        description="Switch on to approve this release for the environment; leave off to "
        "reject it (nothing is deployed there).",
    )
    approver: str = Field(
        min_length=1,
        description="Who decides (name or handle); recorded with the release in its history.",
    )
    reason: str = Field(
        min_length=1,
        description="Why (a ticket, a change window, what you checked); recorded with the "
        "decision.",
    )
    commit: str = Field(
        default="", description="The commit this answer is about (filled in: leave it)."
    )
    digest: str = Field(
        default="", description="The artifact digest this answer is about (filled in: leave it)."
    )
    author: str = Field(default="", description="The commit's author (filled in).")
    service: str = Field(default="", description="The service this answer is about (filled in).")


class ApprovalDecision(BaseModel):
    environment: str
    release: Release
    approved: bool
    approver: str
    reason: str
    decided_at: datetime
    automatic: bool
    kind: DecisionKind = "approved"

    @property
    def timed_out(self) -> bool:
        return self.kind == "timed-out"


class UpstreamEvidence(BaseModel):
    """What the upstream environment (staging) proved about the release, with the numbers."""

    environment: str
    url: str
    how: str  # e.g. "verified in this run", "already live: verified by run ... at ..."
    verdict: Verdict | None = None
    verdict_line: str = ""
    latency_tolerance: float | None = None
    latency_slack_ms: float | None = None
    latency_ms: dict[str, float] = Field(
        default_factory=dict, description="p50/p95 the release measured there (ms)."
    )


def upstream_evidence(
    env: Any, release: Release, verdict: Verdict | None, samples: Any = None
) -> UpstreamEvidence:
    """The evidence an environment holds for a release: this run's verdict, or the ledger's."""
    settings = env.verification
    if verdict is not None:
        return UpstreamEvidence(
            environment=env.name,
            url=env.url,
            how="verified in this run",
            verdict=verdict,
            verdict_line=verdict.line(),
            latency_tolerance=settings.latency_tolerance,
            latency_slack_ms=settings.latency_slack_ms,
            latency_ms={
                name: round(value, 1)
                for name, value in (
                    ("p50", getattr(samples, "p50_ms", None)),
                    ("p95", getattr(samples, "p95_ms", None)),
                )
                if value is not None
            },
        )
    entry = env.ledger().last("verified", release.digest)
    how = (
        f"already live there: verified by run {entry.run_id} at {entry.at:%Y-%m-%d %H:%M:%S} UTC"
        if entry is not None
        else "already live there"
    )
    return UpstreamEvidence(
        environment=env.name,
        url=env.url,
        how=how,
        verdict_line=str(entry.details.get("verdict", "")) if entry is not None else "",
        latency_tolerance=settings.latency_tolerance,
        latency_slack_ms=settings.latency_slack_ms,
    )


def approval_key(
    environment: str, flow_run_id: str, digest: str | None = None, attempt: int = 0
) -> str:
    """Pause keys are lowercase letters, digits and dashes: one per environment, release
    (the first 12 hex digits of its digest), attempt and run. An answer given under one key
    approves only that release: a run that arrives at the gate with another digest finds no
    answer under its own key and asks again."""
    middle = f"-{digest_part(digest)}-{attempt}" if digest else ""
    raw = f"{KEY_PREFIX}{environment}{middle}-{flow_run_id}".lower()
    return KEY_RE.sub("-", raw).strip("-")


def digest_part(digest: str) -> str:
    return digest.split(":", 1)[-1][:12].lower()


KEY_PARTS = re.compile(
    rf"^{KEY_PREFIX}(?P<env>.+?)(?:-(?P<digest>[0-9a-f]{{12}})-(?P<n>\d+))?-"
    rf"(?P<run>{UUID_TAIL})$"
)


def key_parts(key: str | None) -> tuple[str, str | None, int] | None:
    """(environment, digest part, attempt) of an approval pause key; None for another pause."""
    if not key or not key.startswith(KEY_PREFIX):
        return None
    match = KEY_PARTS.match(key)
    if not match:
        return None
    return match["env"], match["digest"], int(match["n"] or 0)


def environment_of_key(key: str | None) -> str | None:
    """The environment an approval pause key names, or None for any other pause."""
    parts = key_parts(key)
    return parts[0] if parts else None


def auto_decision(environment: str, release: Release, by: str) -> ApprovalDecision:
    decision = ApprovalDecision(
        environment=environment,
        release=release,
        approved=True,
        approver=by,
        reason="auto_approve=True was passed to the run",
        decided_at=datetime.now(UTC),
        automatic=True,
        kind="automatic",
    )
    run_logger().info("Approval for %s of %s: automatic (auto_approve)", environment, release.label)
    return decision


# ---------------------------------------------------------------------------- description
def _value(name: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f} ms" if "latency" in name or name.startswith("p") else f"{value:.2%}"


def _bound(name: str, bound: float | None) -> str:
    if bound is None:
        return "-"
    return f"{bound:.2%}" if "error" in name else f"{bound:+.0%}"


def evidence_table(evidence: UpstreamEvidence) -> str:
    """The upstream's verdict as the approver sees it: each test the judge ran, its value on
    the release and on the stable release (or the limit), the bound that decided."""
    v = evidence.verdict
    head = f"### {evidence.environment} verification ({evidence.url})\n\n_{evidence.how}_\n\n"
    if v is None:
        line = evidence.verdict_line or "no measurements recorded"
        return head + f"Recorded verdict: `{line}`\n"
    rows = [
        (
            m.name,
            _value(m.name, m.new),
            _value(m.name, m.stable),
            _bound(m.name, m.bound),
            f"{m.confidence:.2%}",
            "**regression**" if m.decided else "no",
        )
        for m in v.metrics
    ]
    table = (
        f"**{v.outcome.value}**: {v.reason}\n\n"
        f"- requests: {v.new_requests} ({v.new_errors} errors) on the release, "
        f"{v.stable_requests} ({v.stable_errors} errors) on the stable release\n\n"
        "| test | release | stable | 1-sided bound | confidence | regression |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(f"| {' | '.join(r)} |" for r in rows)
    )
    if evidence.latency_ms and not any(m.name.endswith("latency") for m in v.metrics):
        figures = ", ".join(f"{k} latency {ms:g} ms" for k, ms in evidence.latency_ms.items())
        table += (
            f"\n\n{figures} on the release (not compared: no stable release ran beside it)"
        )
    notes = "".join(f"\n- {n}" for n in v.notes)
    return head + table + "\n" + (f"\nNotes:{notes}\n" if notes else "")


def approval_description(
    env_name: str,
    release: Release,
    evidence: UpstreamEvidence | None,
    summary_markdown: str = "",
    migration_phase: str | None = None,
    timeout_s: int | None = None,
) -> str:
    """What the approver sees above the form: what exactly they approve, with the numbers."""
    facts = [
        ("service", f"`{release.service}` {release.version}"),
        ("commit", f"`{release.commit}`"),
        ("digest", f"`{release.digest}`"),
        ("artifact", f"`{release.artifact.filename or release.artifact.uri}`"),
        # Hook for the migration work: the phase (expand / migrate / contract) this release
        # carries, once the pipeline knows it. None means no schema change travels with it.
        ("migration phase", f"`{migration_phase}`" if migration_phase else "none"),
    ]
    text = (
        f"## Approve {release.service} {release.version} for **{env_name}**?\n\n"
        "| what you approve | |\n|---|---|\n"
        + "\n".join(f"| {k} | {v} |" for k, v in facts)
        + "\n\n"
    )
    if evidence is not None:
        text += evidence_table(evidence) + "\n"
    text += (
        f"Switch **approved** on to send this digest to {env_name}; leave it off to reject "
        f"(nothing in {env_name} changes). Name and reason are recorded with the release."
    )
    if timeout_s:
        text += f" Without an answer within {timeout_s}s the run ends without touching {env_name}."
    if summary_markdown:
        text += f"\n\n### The run so far\n\n{summary_markdown}\n"
    return text


# ---------------------------------------------------------------------------- the gate
def _fired_pause_keys(flow_run_id: str) -> set[str]:
    """Pause keys that already fired for this run (a restarted run has passed them)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
    return set(run.empirical_policy.pause_keys or set())


def _resumed_at(flow_run_id: str) -> datetime | None:
    """When the answer came: the first state after the run's last Paused/Suspended state."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        states = sorted(client.read_flow_run_states(UUID(flow_run_id)), key=lambda s: s.timestamp)
    paused = [i for i, state in enumerate(states) if state.is_paused()]
    if not paused or paused[-1] + 1 >= len(states):
        return None
    return states[paused[-1] + 1].timestamp


def _wait_for_pause_expiry(flow_run_id: str, timeout_s: float = 30) -> None:
    """After a pause timed out, let the server's pause-expiration service fail the run first.

    The server refuses any transition out of an expired Paused state and substitutes its own
    Failed("... never resumed"); once it has failed the run (within its 5 s loop), the flow's
    own final state (``ApprovalTimedOut``, with the reason) is accepted over it.
    """
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(UUID(flow_run_id)).state
            if state is None or not state.is_paused():
                return
            time.sleep(0.5)


def _timed_out(env: Any, release: Release, timeout_s: int, flow_run_id: str) -> ApprovalDecision:
    _wait_for_pause_expiry(flow_run_id)
    return ApprovalDecision(
        environment=env.name,
        release=release,
        approved=False,
        approver="(nobody)",
        reason=f"approval timed out: no answer within {timeout_s}s",
        decided_at=datetime.now(UTC),
        automatic=False,
        kind="timed-out",
    )


def answer_problem(env: Any, release: Release, answer: Approval) -> str | None:
    """Why an answer from the form cannot decide (None: it can): it names another release,
    or its approver may not approve here (the list, or their own commit)."""
    from prefect_delivery.tasks.promotion import answer_refusal

    if answer.service and answer.service != release.service:
        return (
            f"the answer is about the service {answer.service!r}, not {release.service!r} "
            "waiting here; an approval counts only for what it was shown"
        )
    if (answer.digest, answer.commit) != (release.digest, release.commit):
        return (
            f"the answer is about {answer.commit[:12] or '?'} / {answer.digest[:19] or '?'}, "
            f"not the release waiting here ({release.commit[:12]} / {release.digest[:19]}); "
            "an approval counts only for what it was shown"
        )
    if not answer.approved:
        return None  # anyone may stop a release
    return answer_refusal(env.promotion, env.name, answer.approver, release)


def _record_once(env: Any, event: str, release: Release, run_id: str, key: str, **details):
    """A ledger line about a pause key, once (a restarted run passes the same keys again)."""
    ledger = env.ledger()
    if any(e.event == event and e.details.get("key") == key for e in ledger.entries()):
        return
    ledger.append(event, release, run_id, key=key, **details)


def request_approval(
    env: Any,
    release: Release,
    evidence: UpstreamEvidence | None,
    summary_markdown: str,
    timeout_s: int,
    flow_run_id: str,
    mode: Mode = "pause",
    migration_phase: str | None = None,
) -> ApprovalDecision:
    """Wait for a person's answer (pause or suspend), or the timeout. Returns the decision.

    The answer must be about this release (its key and its form carry the digest) and come
    from someone the environment's policy lets approve; otherwise it is recorded as refused,
    said in the log, and the gate asks again until its time is up."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run, suspend_flow_run

    logger = run_logger()
    fired = _fired_pause_keys(flow_run_id)
    mine = digest_part(release.digest)
    for old in sorted(fired):
        parts = key_parts(old)
        if parts and parts[0] == env.name and parts[1] and parts[1] != mine:
            _record_once(
                env,
                "approval-void",
                release,
                flow_run_id,
                old,
                reason=f"an answer given for digest {parts[1]} does not approve {mine}; "
                "asked again",
            )
            logger.warning(
                "%s: the answer under %s was for another release (%s); asking again for %s",
                env.name,
                old,
                parts[1],
                release.label,
            )
    form = Approval.with_initial_data(
        description=approval_description(
            env.name, release, evidence, summary_markdown, migration_phase, timeout_s
        ),
        commit=release.commit,
        digest=release.digest,
        author=release.author or "",
        service=release.service,
    )
    started = time.monotonic()
    attempt = 0
    waiting = None
    while True:
        key = approval_key(env.name, flow_run_id, release.digest, attempt)
        remaining = max(1, int(timeout_s - (time.monotonic() - started)))
        if key not in fired:  # not a suspended run passing a gate it was answered at
            events.approval_requested(env.name, release, key, remaining, mode)
            deadline = datetime.now(UTC).timestamp() + remaining
            waiting = approval_gate(env.scope, remaining).start(
                note=f"times out at {datetime.fromtimestamp(deadline, UTC):%Y-%m-%d %H:%M:%S} UTC"
            )
            logger.info(
                "Waiting up to %ss for approval of %s in %s (%s, pause key %s); resume the run "
                "in the Prefect UI or run `delivery approve %s --approver NAME --reason TEXT`",
                remaining,
                release.label,
                env.name,
                mode,
                key,
                flow_run_id,
            )
        try:
            if mode == "suspend":
                answer = suspend_flow_run(wait_for_input=form, key=key, timeout=remaining)
            else:
                # Prefect polls every 10 s by default; an approver waiting for "deploying" to
                # appear deserves better, and one read every 2 s costs nothing.
                answer = pause_flow_run(
                    wait_for_input=form, key=key, timeout=remaining, poll_interval=2
                )
        except FlowPauseTimeout:
            if waiting is not None:
                waiting.finish("timed out")
            return _timed_out(env, release, timeout_s, flow_run_id)
        if waiting is not None:
            waiting.finish(f"answered by {answer.approver or 'someone'}")
            waiting = None
        problem = answer_problem(env, release, answer)
        if problem is None:
            break
        _record_once(
            env,
            "approval-refused",
            release,
            flow_run_id,
            key,
            approver=answer.approver,
            reason=problem,
        )
        logger.error("Approval for %s refused: %s Asking again.", env.name, problem)
        attempt += 1
        if time.monotonic() - started >= timeout_s:
            return _timed_out(env, release, timeout_s, flow_run_id)
    resumed_at = _resumed_at(flow_run_id)
    approved = bool(answer.approved)
    return ApprovalDecision(
        environment=env.name,
        release=release,
        approved=approved,
        approver=answer.approver,
        reason=answer.reason,
        decided_at=resumed_at or datetime.now(UTC),
        automatic=False,
        kind="approved" if approved else "rejected",
    )


def decision_markdown(decision: ApprovalDecision, flow_run_id: str | None) -> str:
    verdict = {
        "approved": "APPROVED",
        "automatic": "APPROVED (automatically)",
        "rejected": "REJECTED",
        "timed-out": "TIMED OUT (nobody answered)",
    }[decision.kind]
    rows = [
        ("decision", f"**{verdict}**"),
        ("environment", decision.environment),
        ("approver", decision.approver),
        ("reason", decision.reason.replace("|", "/")),
        ("decided at", decision.decided_at.isoformat()),
        ("release", f"{decision.release.service} {decision.release.version}"),
        ("commit", f"`{decision.release.commit}`"),
        ("digest", f"`{decision.release.digest}`"),
        ("flow run", f"`{flow_run_id}`" if flow_run_id else "-"),
    ]
    title = f"{decision.release.service} in {decision.environment}"
    return f"# Approval for {title}\n\n| | |\n|---|---|\n" + "\n".join(
        f"| {k} | {v} |" for k, v in rows
    )


def record_decision(env: Any, decision: ApprovalDecision, flow_run_id: str | None) -> None:
    """Ledger line, markdown artifact and approval-decided event for one decision."""
    env.ledger().append(
        "approved" if decision.approved else "rejected",
        decision.release,
        flow_run_id,
        approver=decision.approver,
        reason=decision.reason,
        automatic=decision.automatic,
        decision=decision.kind,
        decided_at=decision.decided_at.isoformat(),
    )
    try:
        publish_markdown(
            markdown=decision_markdown(decision, flow_run_id),
            key=artifact_key("approval", decision.environment, decision.release.service),
            description=f"Approval decision for {decision.release.label} in "
            f"{decision.environment}: {decision.kind}",
        )
    except Exception as exc:  # noqa: BLE001 - an artifact is a record, not a gate
        run_logger().warning("could not publish the approval artifact: %s", exc)
    events.approval_decided(
        decision.environment,
        decision.release,
        decision.kind,
        decision.approver,
        decision.reason,
        decision.decided_at.isoformat(),
        decision.automatic,
    )
    run_logger().info(
        "Approval for %s of %s: %s by %s (%s)",
        decision.environment,
        decision.release.label,
        decision.kind,
        decision.approver,
        decision.reason,
    )
