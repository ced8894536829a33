"""Rollback flow: return an environment to its previous verified release.

Reads what is live first. An alert names the digest it is about (``digest``): the rollback
acts only while that digest still serves, so an alert that waited behind another delivery, or
came twice, changes nothing. The target is the newest release the ledger records as verified
here other than the one serving (a release once judged bad is never a target again), and the
schema gate is asked first (tasks/migrate.py, rollback_gate). Then:

- the target is still warm: traffic moves to it in one weight change at once (its instances
  answered their health check just before), then it is verified through the frontend against
  absolute thresholds and its own figures from when it was verified here;
- the target was retired: it is started again from its artifact digest, health-checked,
  smoke-tested and verified on its own instances, against the same reference, BEFORE it gets
  any traffic; only then does traffic move and the frontend get verified.

Never is the release being left the yardstick (a release failing fast with 5xx has a tiny
p95). If the target fails its verification, traffic is not given back to the release that was
left (it was judged bad): before the switch nothing moved; after it, traffic stays on the
target. Either way the run ends Failed, the target is recorded as failed here (so it is not
chosen again), and the report and a verification-failed event say that both failed.
"""

from __future__ import annotations

import time
from typing import Literal

from prefect import flow
from pydantic import BaseModel, Field

from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.errors import ConfigError, GateFailed, VerdictError
from prefect_delivery.blocks.release import Release
from prefect_delivery.tasks.breakglass import names, rollback_plan
from prefect_delivery.tasks.deploy import launch, restore, retire
from prefect_delivery.tasks.migrate import rollback_gate
from prefect_delivery.tasks.revert import revert
from prefect_delivery.tasks.runtime import events
from prefect_delivery.tasks.runtime.context import current_run_id
from prefect_delivery.tasks.runtime.lock import environment_lock
from prefect_delivery.tasks.runtime.log import run_logger
from prefect_delivery.tasks.runtime.progress import artifact_key
from prefect_delivery.tasks.runtime.report import publish_markdown
from prefect_delivery.tasks.runtime.traffic import preempt, traffic_lock
from prefect_delivery.tasks.verify import (
    VerificationResult,
    health_status,
    recorded_figures,
    reference_samples,
    verify,
    verify_instances,
)


class RollbackOutcome(BaseModel):
    environment: str
    service: str = ""
    url: str
    status: str  # rolled-back, already-there, not-serving (the alert's digest does not serve)
    from_release: Release | None = None
    to_release: Release | None
    restarted: bool = False
    switch_ms: float = 0.0
    seconds: float = 0.0
    verification: VerificationResult | None = None
    retired: list[str] = Field(default_factory=list)


@flow(name="rollback", flow_run_name="rollback {service} in {environment}")
def rollback(
    environment: str,
    service: str | None = None,
    to: str | None = None,
    reason: str = "requested",
    digest: str | None = None,
    source: Literal["person", "monitor"] = "person",
) -> RollbackOutcome:
    """Return ``service`` in ``environment`` to its previous verified release (or the one
    ``to`` names); ``service`` may be left out only where one service is delivered. Nothing
    of another service moves.

    ``digest``: act only while this release serves (what an alert saw); a monitor's alert
    (``source="monitor"``) must name one. A delivery in progress is preempted: it stops at
    its next safe point and lets go of the environment, which this flow then takes.
    """
    started = time.perf_counter()
    env = Environment.load(environment).pick(service or None, "delivery rollback")
    env.remember()
    if source == "monitor" and not (digest or "").strip():
        raise ConfigError(
            f"rollback {env.scope} (a monitor's alert)",
            "the alert names no release digest, so it cannot be told apart from an alert "
            "about an older or a newer release; nothing was changed.",
            "send alerts with `delivery monitor-alert ENV --reason ...` (it names the digest "
            "it saw serving), or put the digest in the event's resource as delivery.digest.",
        )
    serving = env.observe().serving()
    if digest and (serving is None or not names(digest, serving.digest)):
        return _not_serving(env, digest, serving)
    by = f"rollback flow run {current_run_id() or 'local'} ({source})"
    with traffic_lock(env.state_dir, env.key):  # a delivery in progress stops at its next
        preempt(env.state_dir, env.key, by, None, reason)  # safe point and lets go
    with environment_lock(env.key, env.state_dir, current_run_id() or "local"):
        return roll_back_environment(
            env, to, reason, started, expect_digest=digest or None, source=source
        )


def _not_serving(env: Environment, digest: str, serving: Release | None) -> RollbackOutcome:
    run_logger().info(
        "%s: the alert is about %s, which does not serve here now (%s does); nothing to do",
        env.scope,
        digest[:19],
        serving.label if serving else "nothing",
    )
    return RollbackOutcome(
        environment=env.name,
        service=env.service,
        url=env.url,
        status="not-serving",
        from_release=serving,
        to_release=serving,
    )


@flow(
    name="rollback-record", flow_run_name="record the rollback of {service} in {environment}"
)
def record_rollback(
    environment: str,
    service: str,
    to_digest: str,
    left: list[str],
    reason: str,
    switch_ms: float,
    source: Literal["person", "monitor"] = "person",
) -> RollbackOutcome:
    """What follows a break-glass switch (tasks/breakglass.py), which already moved all
    traffic to ``to_digest``: once the preempted delivery let go of the environment, verify
    the release returned to through the frontend (against absolute thresholds and its own
    recorded figures), retire the instances of the releases left, record it (ledger,
    rolled-back event, report). If the target fails its verification, traffic stays on it
    (the release left was judged bad), the run ends Failed and says that both failed."""
    started = time.perf_counter()
    env = Environment.load(environment).for_service(service)
    env.remember()
    with environment_lock(env.key, env.state_dir, current_run_id() or "local"):
        live = env.observe()
        releases = live.releases()
        target = releases.get(to_digest) or next(
            (r for r in env.ledger().verified_releases() if r.digest == to_digest), None
        )
        if target is None:
            raise ConfigError(f"rollback-record {env.scope}", f"{to_digest} is not known here.")
        outcome = RollbackOutcome(
            environment=env.name,
            service=env.service,
            url=env.url,
            status="rolled-back",
            from_release=releases.get(left[0]) if left else None,
            to_release=target,
            switch_ms=switch_ms,
        )
        if live.serving() is None or live.serving().digest != to_digest:
            outcome.status = "superseded"
            run_logger().warning(
                "%s: traffic moved on since the break-glass switch to %s; recorded only",
                env.name,
                target.label,
            )
            return outcome
        warm = [li.instance for li in live.of_release(to_digest) if li.instance.alive]
        leaving = [li.instance for li in live.instances if li.instance.release.digest in left]
        result = verify(env, target, reference_samples(env, target), warm, None)
        outcome.verification = result
        left_releases = [releases[d] for d in left if d in releases]
        if not result.passed:
            raise _both_failed(
                env,
                left_releases[0] if left_releases else None,
                target,
                reason,
                "; ".join(result.reasons()),
                f"Traffic stays on {target.label}.",
            )
        retired = retire.fn(env, leaving)
        for release in left_releases:
            events.rolled_back(env.name, release, reason[:300], to=target, source=source)
        env.ledger().append(
            "verified",
            target,
            current_run_id(),
            reason=f"rollback: {reason}",
            verdict=result.verdict.line(),
            figures=recorded_figures(result.samples),
        )
        outcome.retired = [i.id for i in leaving][:retired]
        outcome.seconds = time.perf_counter() - started
        _publish_rollback_report(outcome, reason, left_releases)
        return outcome


def _publish_rollback_report(
    outcome: RollbackOutcome, reason: str, left: list[Release]
) -> None:
    lines = [
        f"# Rollback of {outcome.service} in {outcome.environment}: **{outcome.status}**",
        "",
        f"- reason: {reason}",
        f"- traffic on `{outcome.to_release.label}` in {outcome.switch_ms:.1f} ms (one weight "
        "change)",
        f"- left: {', '.join(f'`{r.label}`' for r in left) or 'nothing'}",
    ]
    if outcome.verification is not None:
        lines.append(f"- verification: {outcome.verification.verdict.line()}")
    lines.append(f"- instances retired: {len(outcome.retired)}")
    try:
        publish_markdown(
            key=artifact_key("rollback", outcome.environment, outcome.service),
            markdown="\n".join(lines) + "\n",
            description=f"Rollback of {outcome.service} in {outcome.environment} to "
            f"{outcome.to_release.label}",
        )
    except Exception as exc:  # noqa: BLE001 - an artifact is a record, not a gate
        run_logger().warning("could not publish the rollback report: %s", exc)


def _stays(current: Release | None) -> str:
    return f"Traffic stays on {current.label if current else 'what serves now'}."


def _both_failed(
    env: Environment,
    current: Release | None,
    target: Release,
    reason: str,
    why: str,
    traffic: str,
) -> GateFailed:
    """The target failed too: record it (not chosen again), say so, end Failed."""
    env.ledger().append("failed", target, current_run_id(), reason=f"rollback target: {why}")
    message = (
        f"rollback of {env.scope} failed: {current.label if current else 'nothing'} was left "
        f"({reason}) and {target.label} did not verify either: {why}. {traffic}"
    )
    events.verification_failed(env.name, target, message[:500], gate="rollback verification")
    return GateFailed("rollback verification", message)


def roll_back_environment(
    env: Environment,
    to: str | None,
    reason: str,
    started: float | None = None,
    expect_digest: str | None = None,
    source: str = "pipeline",
) -> RollbackOutcome:
    """The rollback itself, for a caller that already holds the environment's slot."""
    logger = run_logger()
    started = time.perf_counter() if started is None else started
    env.router.ensure_started()
    live = env.observe()
    current = live.serving()
    if expect_digest and (current is None or not names(expect_digest, current.digest)):
        return _not_serving(env, expect_digest, current)
    target, left = rollback_plan(live, env.ledger().verified_releases(), to, env.cli)
    outcome = RollbackOutcome(
        environment=env.name,
        service=env.service,
        url=env.url,
        status="rolled-back",
        from_release=current,
        to_release=target,
    )
    if not left:
        outcome.status = "already-there"
        logger.info("%s already serves %s", env.name, target.label)
        return outcome
    current = current if current is not None and current.digest != target.digest else left[0]
    # Once a contract is applied, no rollback to a release that needs what it dropped.
    rollback_gate(env, current, target)
    reference = reference_samples(env, target)
    left_digests = {r.digest for r in left}
    current_instances = [
        li.instance for li in live.instances if li.instance.release.digest in left_digests
    ]
    warm = [
        li.instance
        for li in live.of_release(target.digest)
        if li.instance.alive and li.slot is not None
    ]
    warm = [i for i in warm if health_status(i.url, target.run.health_path) == 200]
    serving_now = [li for li in live.instances if li.instance.alive and li.weight > 0]
    if warm and len(warm) < len(serving_now):
        # not enough capacity to take all the traffic: ramp up first, verified before traffic
        extra = len(serving_now) - len(warm)
        logger.info(
            "%s: %s has %d warm instance(s), %d serve now: starting %d more first",
            env.name,
            target.label,
            len(warm),
            len(serving_now),
            extra,
        )
        try:
            ramp = launch(env, target, "rollback", extra)
        except VerdictError as exc:
            raise _both_failed(env, current, target, reason, str(exc), _stays(current)) from exc
        before = verify_instances(env, target, ramp, reference)
        if not before.passed:
            retire.fn(env, ramp)
            raise _both_failed(
                env, current, target, reason, "; ".join(before.reasons()), _stays(current)
            )
        warm += ramp
    if warm:
        logger.info("%s: %s is still warm; switching traffic to it now", env.name, target.label)
        outcome.switch_ms = restore.fn(env, warm, current_instances).took_ms
        result = verify(env, target, reference, warm, None)
        outcome.verification = result
        if not result.passed:
            revert.fn(env, current, warm, current_instances, reason, to=target, source=source)
            raise _both_failed(
                env,
                current,
                target,
                reason,
                "; ".join(result.reasons()),
                f"Traffic stays on {target.label}.",
            )
    else:
        logger.info(
            "%s: %s was retired; starting it again from %s and verifying it before it gets traffic",
            env.name,
            target.label,
            target.digest,
        )
        try:
            warm = launch(env, target, "rollback", env.strategy.instances)
        except VerdictError as exc:  # it did not start healthy: nothing took traffic
            raise _both_failed(env, current, target, reason, str(exc), _stays(current)) from exc
        outcome.restarted = True
        before = verify_instances(env, target, warm, reference)
        if not before.passed:
            retire.fn(env, warm)
            raise _both_failed(
                env, current, target, reason, "; ".join(before.reasons()), _stays(current)
            )
        outcome.switch_ms = restore.fn(env, warm, current_instances).took_ms
        result = verify(env, target, reference, warm, None)
        outcome.verification = result
        if not result.passed:
            revert.fn(env, current, warm, current_instances, reason, to=target, source=source)
            raise _both_failed(
                env,
                current,
                target,
                reason,
                "; ".join(result.reasons()),
                f"Traffic stays on {target.label}.",
            )
    reverted = revert(env, current, warm, current_instances, reason, to=target, source=source)
    env.ledger().append(
        "verified",
        target,
        current_run_id(),
        reason=f"rollback: {reason}",
        verdict=result.verdict.line(),
        figures=recorded_figures(result.samples),
    )
    outcome.retired = reverted.retired
    outcome.seconds = time.perf_counter() - started
    logger.warning(
        "%s rolled back from %s to %s (%s) in %.1fms traffic switch",
        env.name,
        current.label if current else "nothing",
        target.label,
        reason,
        outcome.switch_ms,
    )
    return outcome
