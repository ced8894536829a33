"""Deploy flow: one release into one environment, following the environment's strategy.

Composition only: reconcile, then run the strategy's plan step by step through tasks. Any
failure (a verdict or a fault) puts all traffic back on the stable release with one weight
change, retires the new instances and records why; success records the release as verified.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from blocks.environment import Environment
from blocks.errors import DeliveryError, GateFailed
from blocks.metrics import Samples
from blocks.release import Instance, Release
from tasks import strategies
from tasks.deploy import launch, reconcile, replace, restore, retire, shift
from tasks.log import run_logger
from tasks.report import publish_table
from tasks.verify import VerificationResult, measure_baseline, verify


class StepRecord(BaseModel):
    step: str
    result: str
    detail: str = ""
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class DeployOutcome(BaseModel):
    environment: str
    url: str
    release: Release
    status: str  # deployed, already-live
    strategy: str
    previous: Release | None = None
    previous_instances: list[Instance] = Field(default_factory=list)
    new_instances: list[Instance] = Field(default_factory=list)
    baseline: Samples | None = None
    verification: VerificationResult | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    cutover_at: datetime | None = None


class RollbackFailed(DeliveryError):
    """Rolling back did not succeed; the environment needs a person."""


def _new_slot(stable_instances: list[Instance]) -> str:
    return "green" if any(i.slot.startswith("blue") for i in stable_instances) else "blue"


def _run_id() -> str | None:
    return str(flow_run.get_id()) if flow_run.get_id() else None


@flow(name="deploy", flow_run_name="deploy {release.version} to {environment}")
def deploy(environment: str, release: Release) -> DeployOutcome:
    """Deploy ``release`` to the environment named by an Environment block."""
    logger = run_logger()
    env = Environment.load(environment)
    rec = reconcile(env, release)
    outcome = DeployOutcome(
        environment=env.name,
        url=env.url,
        release=release,
        status="already-live" if rec.already_live else "deployed",
        strategy=env.strategy.kind,
        previous=rec.stable if not rec.already_live else None,
        previous_instances=rec.stable_instances if not rec.already_live else [],
    )
    if rec.already_live:
        logger.info("%s already serves %s, verified; nothing to deploy", env.name, release.label)
        outcome.steps.append(StepRecord(step="reconcile", result="already live"))
        return outcome

    plan = strategies.plan(env.strategy, has_stable=rec.stable is not None)
    logger.info(
        "Deploying %s to %s with %s: %s",
        release.label,
        env.name,
        env.strategy.kind,
        " -> ".join(strategies.describe(s) for s in plan),
    )
    ledger = env.ledger()
    new_instances: list[Instance] = []
    try:
        for step in plan:
            detail = ""
            match step:
                case strategies.Launch(count=count, slot=slot):
                    slot = _new_slot(rec.stable_instances) if slot == "auto" else slot
                    started = launch(env, release, slot, count)
                    new_instances += started
                    outcome.new_instances = list(new_instances)
                    ledger.append("deployed", release, _run_id(), instances=[i.id for i in started])
                    detail = ", ".join(i.url for i in started)
                case strategies.Baseline():
                    outcome.baseline = measure_baseline(env, rec.stable)
                    detail = f"p95 {outcome.baseline.p95_ms or 0:.1f}ms"
                case strategies.Shift(percent=percent):
                    change = shift(env, new_instances, rec.stable_instances, percent)
                    detail = f"{change.took_ms:.1f}ms"
                    if percent == 100:
                        outcome.cutover_at = datetime.now(UTC)
                case strategies.Replace(index=index):
                    change = replace(env, new_instances, rec.stable_instances, index)
                    detail = f"{change.percent_new:.0f}% new, {change.took_ms:.1f}ms"
                    if change.percent_new >= 100:
                        outcome.cutover_at = datetime.now(UTC)
                case strategies.Analyze():
                    from flows.analysis_step import run_analysis  # canary analysis

                    detail = run_analysis(env, release, rec, new_instances, step, outcome)
                case strategies.Verify():
                    result = verify(env, release, outcome.baseline)
                    outcome.verification = result
                    if not result.passed:
                        raise GateFailed("verification", "; ".join(result.reasons()))
                    detail = result.verdict.line()
            outcome.steps.append(
                StepRecord(step=strategies.describe(step), result="done", detail=detail)
            )
    except BaseException as exc:
        outcome.steps.append(StepRecord(step="rollout", result="failed", detail=str(exc)[:300]))
        _roll_back(env, release, rec.stable_instances, new_instances, exc)
        _publish_steps(outcome)
        raise

    ledger.append(
        "verified",
        release,
        _run_id(),
        previous=rec.stable.digest if rec.stable else None,
        verdict=outcome.verification.verdict.line() if outcome.verification else "",
    )
    _publish_steps(outcome)
    logger.info("%s now serves %s (verified)", env.name, release.label)
    return outcome


def _roll_back(
    env: Environment,
    release: Release,
    stable_instances: list[Instance],
    new_instances: list[Instance],
    cause: BaseException,
) -> None:
    logger = run_logger()
    logger.error("Deploy of %s to %s failed: %s. Rolling back.", release.label, env.name, cause)
    try:
        restore(env, stable_instances, new_instances)
        retire(env, new_instances)
    except Exception as exc:
        raise RollbackFailed(
            f"rolling back {env.name} after '{cause}' failed too: {exc}. Check `delivery "
            f"status`, then run `delivery rollback {env.name}`."
        ) from exc
    env.ledger().append("failed", release, _run_id(), reason=str(cause)[:500])


def _publish_steps(outcome: DeployOutcome) -> None:
    try:
        publish_table(
            key=f"deploy-steps-{outcome.environment}",
            rows=[s.model_dump(mode="json") for s in outcome.steps],
            description=f"Steps of the {outcome.strategy} deploy of {outcome.release.label} "
            f"to {outcome.environment}",
        )
    except Exception as exc:  # an artifact is a record, not a gate
        run_logger().warning("could not publish the step table: %s", exc)
