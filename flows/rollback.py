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
from prefect_delivery.tasks.deploy import launch, restore, retire
from prefect_delivery.tasks.migrate import rollback_gate
from prefect_delivery.tasks.revert import revert
from prefect_delivery.tasks.runtime import events
from prefect_delivery.tasks.runtime.context import current_run_id
from prefect_delivery.tasks.runtime.lock import environment_lock
from prefect_delivery.tasks.runtime.log import run_logger
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
    url: str
    status: str  # rolled-back, already-there, not-serving (the alert's digest does not serve)
    from_release: Release | None = None
    to_release: Release | None
    restarted: bool = False
    switch_ms: float = 0.0
    seconds: float = 0.0
    verification: VerificationResult | None = None
    retired: list[str] = Field(default_factory=list)


def choose_target(env: Environment, current: Release | None, to_digest: str | None) -> Release:
    verified = env.ledger().verified_releases()
    if to_digest:
        for release in verified:
            if release.digest == to_digest or release.commit.startswith(to_digest):
                return release
        raise ConfigError(
            f"rollback {env.name} --to",
            f"{to_digest!r} is not a release verified in {env.name}.",
            "pick a digest or commit from `delivery status` or the environment's history.",
        )
    target = env.ledger().previous_verified(current.digest if current else None)
    if target is None:
        raise ConfigError(
            f"rollback {env.name}",
            "there is no previous verified release to return to.",
            "deliver a release first; a rollback needs one verified before the current one.",
        )
    return target


def _names(expected: str, digest: str) -> bool:
    expected = expected.strip()
    return bool(expected) and (
        digest == expected or digest.split(":", 1)[-1].startswith(expected.split(":", 1)[-1])
    )


@flow(name="rollback", flow_run_name="rollback {environment}")
def rollback(
    environment: str,
    to: str | None = None,
    reason: str = "requested",
    digest: str | None = None,
    source: Literal["person", "monitor"] = "person",
) -> RollbackOutcome:
    """Return ``environment`` to its previous verified release (or the one ``to`` names).

    ``digest``: act only while this release serves (what an alert saw); a monitor's alert
    (``source="monitor"``) must name one.
    """
    started = time.perf_counter()
    env = Environment.load(environment)
    if source == "monitor" and not (digest or "").strip():
        raise ConfigError(
            f"rollback {env.name} (a monitor's alert)",
            "the alert names no release digest, so it cannot be told apart from an alert "
            "about an older or a newer release; nothing was changed.",
            "send alerts with `delivery monitor-alert ENV --reason ...` (it names the digest "
            "it saw serving), or put the digest in the event's resource as delivery.digest.",
        )
    with environment_lock(env.name, env.state_dir, current_run_id() or "local"):
        return roll_back_environment(
            env, to, reason, started, expect_digest=digest or None, source=source
        )


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
        f"rollback of {env.name} failed: {current.label if current else 'nothing'} was left "
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
    if expect_digest and (current is None or not _names(expect_digest, current.digest)):
        logger.info(
            "%s: the alert is about %s, which does not serve here now (%s does); nothing to do",
            env.name,
            expect_digest[:19],
            current.label if current else "nothing",
        )
        return RollbackOutcome(
            environment=env.name,
            url=env.url,
            status="not-serving",
            from_release=current,
            to_release=current,
        )
    target = choose_target(env, current, to)
    outcome = RollbackOutcome(
        environment=env.name,
        url=env.url,
        status="rolled-back",
        from_release=current,
        to_release=target,
    )
    if current is not None and current.digest == target.digest:
        outcome.status = "already-there"
        logger.info("%s already serves %s", env.name, target.label)
        return outcome
    # Once a contract is applied, no rollback to a release that needs what it dropped.
    rollback_gate(env, current, target)
    reference = reference_samples(env, target)
    current_instances = [
        li.instance
        for li in live.instances
        if current is not None and li.instance.release.digest == current.digest
    ]
    warm = [
        li.instance
        for li in live.of_release(target.digest)
        if li.instance.alive and li.slot is not None
    ]
    warm = [i for i in warm if health_status(i.url, target.run.health_path) == 200]
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
