"""Rollback flow: return an environment to its previous verified release, on demand.

Reads what is live first. If the previous verified release still runs (kept warm after its
cutover), the rollback is one weight change. If it was retired, it is started again from its
artifact digest (checked against the digest it was built with), health-checked, smoke-tested,
switched to and verified; if that verification fails, traffic goes back to where it was.
An environment with a database is checked first: once a contract is applied there, a rollback
to a release that still uses what it dropped is refused (tasks/migrate.py, rollback_gate).
"""

from __future__ import annotations

import time

from prefect import flow
from pydantic import BaseModel, Field

from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.errors import ConfigError, GateFailed
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.tasks.deploy import launch, restore
from prefect_delivery.tasks.migrate import rollback_gate
from prefect_delivery.tasks.revert import revert
from prefect_delivery.tasks.runtime.context import current_run_id
from prefect_delivery.tasks.runtime.lock import environment_lock
from prefect_delivery.tasks.runtime.log import run_logger
from prefect_delivery.tasks.verify import VerificationResult, verify


class RollbackOutcome(BaseModel):
    environment: str
    url: str
    status: str  # rolled-back, already-there
    from_release: Release | None = None
    to_release: Release
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


@flow(name="rollback", flow_run_name="rollback {environment}")
def rollback(environment: str, to: str | None = None, reason: str = "requested") -> RollbackOutcome:
    """Return ``environment`` to its previous verified release (or the one ``to`` names)."""
    started = time.perf_counter()
    env = Environment.load(environment)
    with environment_lock(env.name, env.state_dir, current_run_id() or "local"):
        return roll_back_environment(env, to, reason, started)


def roll_back_environment(
    env: Environment, to: str | None, reason: str, started: float | None = None
) -> RollbackOutcome:
    """The rollback itself, for a caller that already holds the environment's slot."""
    logger = run_logger()
    started = time.perf_counter() if started is None else started
    env.router.ensure_started()
    live = env.observe()
    current = live.serving()
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

    current_instances = [
        li.instance
        for li in live.instances
        if current is not None and li.instance.release.digest == current.digest
    ]
    warm: list[Instance] = [
        li.instance
        for li in live.of_release(target.digest)
        if li.instance.alive and li.slot is not None
    ]
    if warm:
        for instance in warm:
            env.router.wait_until_up(instance.address, timeout_s=target.run.startup_timeout_s)
        logger.info("%s: %s is still warm; switching traffic back", env.name, target.label)
    else:
        logger.info(
            "%s: %s was retired; starting it again from %s", env.name, target.label, target.digest
        )
        warm = launch(env, target, "rollback", env.strategy.instances)
        outcome.restarted = True
    change = restore(env, warm, current_instances)
    outcome.switch_ms = change.took_ms
    result = verify(env, target, None, warm, current_instances)
    outcome.verification = result
    if not result.passed:
        # The release we returned to does not verify now: put traffic back where it was.
        if current_instances:
            restore(env, current_instances, warm)
        raise GateFailed(
            "rollback verification",
            f"{target.label} did not verify in {env.name}: {'; '.join(result.reasons())}",
        )
    reverted = revert(env, current, warm, current_instances, reason, to=target)
    env.ledger().append("verified", target, current_run_id(), reason=f"rollback: {reason}")
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
