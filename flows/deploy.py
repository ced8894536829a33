"""Deploy flow: one release into one environment, following the environment's strategy.

Composition only: reconcile, then run the strategy's plan step by step through tasks. Any
failure (a verdict or a fault) puts all traffic back on the stable release with one weight
change, retires the new instances and records why; success records the release as verified.
"""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow
from pydantic import BaseModel, Field

from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.errors import GateFailed, InfrastructureError
from prefect_delivery.blocks.metrics.samples import Samples
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.tasks import strategies
from prefect_delivery.tasks.analysis_run import Action, StepAnalysis, analyze_step
from prefect_delivery.tasks.checks import Checks, ChecksResult, run_checks
from prefect_delivery.tasks.deploy import launch, reconcile, replace, shift
from prefect_delivery.tasks.pictures import publish_rollout
from prefect_delivery.tasks.promotion import promotion_gate
from prefect_delivery.tasks.reconcile import decide_reconcile
from prefect_delivery.tasks.revert import revert
from prefect_delivery.tasks.runtime.context import current_run_id
from prefect_delivery.tasks.runtime.kill_points import kill_point
from prefect_delivery.tasks.runtime.log import run_logger
from prefect_delivery.tasks.runtime.progress import artifact_key
from prefect_delivery.tasks.runtime.report import fmt_ms, publish_markdown, publish_table
from prefect_delivery.tasks.runtime.traffic import Preempted
from prefect_delivery.tasks.verify import (
    VerificationResult,
    measure_baseline,
    recorded_figures,
    verify,
)


class StepRecord(BaseModel):
    step: str
    result: str
    detail: str = ""
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class DeployOutcome(BaseModel):
    environment: str
    service: str = ""
    url: str
    release: Release
    status: str  # deployed, already-live
    strategy: str
    previous: Release | None = None
    previous_instances: list[Instance] = Field(default_factory=list)
    new_instances: list[Instance] = Field(default_factory=list)
    baseline: Samples | None = None
    verification: VerificationResult | None = None
    analyses: list[StepAnalysis] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    failure: str | None = None
    cutover_at: datetime | None = None
    checks: ChecksResult | None = None


class RollbackFailed(InfrastructureError):
    """Rolling back did not succeed (the router or the target did not do it); the environment
    needs a person."""


def _new_slot(stable_instances: list[Instance]) -> str:
    return "green" if any(i.slot.startswith("blue") for i in stable_instances) else "blue"


@flow(
    name="deploy", flow_run_name="deploy {release.service} {release.version} to {environment}"
)
def deploy(environment: str, release: Release, checks: Checks | None = None) -> DeployOutcome:
    """Deploy ``release`` to its service's part of the environment named by an Environment
    block (its route there: its own router, instances and ledger); with ``checks`` (the
    manifest's end-to-end suite), run them against it once the release serves, before it
    counts as verified."""
    logger = run_logger()
    env = Environment.load(environment).for_service(release.service)
    env.remember()
    verified = [r.digest for r in env.ledger().verified_releases()]
    if not decide_reconcile(env.observe(), release.digest, verified).already_live:
        promotion_gate(env, release)  # before anything here changes, reconciliation included
    rec = reconcile(env, release)
    outcome = DeployOutcome(
        environment=env.name,
        service=env.service,
        url=env.url,
        release=release,
        status="already-live" if rec.already_live else "deployed",
        strategy=env.strategy.kind,
        previous=rec.stable if not rec.already_live else None,
        previous_instances=rec.stable_instances if not rec.already_live else [],
    )
    if rec.already_live:
        logger.info("%s already serves %s, verified; nothing to deploy", env.scope, release.label)
        running = env.running()
        outcome.new_instances = [i for i in running if i.release.digest == release.digest]
        outcome.previous_instances = [i for i in running if i.release.digest != release.digest]
        verified = env.ledger().last("verified", release.digest)
        outcome.cutover_at = verified.at if verified else None
        outcome.steps.append(StepRecord(step="reconcile", result="already live"))
        return outcome

    plan = strategies.plan(env.strategy, has_stable=rec.stable is not None)
    strategies.check_capacity(
        env.name,
        env.strategy,
        len(rec.stable_instances),
        min(env.capacity or env.router.server_slots, env.router.server_slots),
    )
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
                    ledger.append(
                        "deployed", release, current_run_id(), instances=[i.id for i in started]
                    )
                    detail = ", ".join(i.url for i in started)
                    kill_point(f"launched-{env.name}")
                case strategies.Baseline():
                    outcome.baseline = measure_baseline(env, rec.stable)
                    detail = f"p95 {outcome.baseline.p95_ms or 0:.1f}ms"
                case strategies.Shift(percent=percent):
                    change = shift(env, new_instances, rec.stable_instances, percent)
                    detail = f"{change.took_ms:.1f}ms"
                    kill_point(f"shifted-{env.name}-{percent}")
                    if percent == 100:
                        outcome.cutover_at = datetime.now(UTC)
                case strategies.Replace(index=index):
                    change = replace(env, new_instances, rec.stable_instances, index)
                    detail = f"{change.percent_new:.0f}% new, {change.took_ms:.1f}ms"
                    if change.percent_new >= 100:
                        outcome.cutover_at = datetime.now(UTC)
                case strategies.Analyze(label=label):
                    analysis = analyze_step(
                        env,
                        release,
                        new_instances,
                        rec.stable_instances,
                        label,
                        step.window_s,
                        step.interval_s,
                        step.max_extensions,
                    )
                    outcome.analyses.append(analysis)
                    _publish_analysis(env.scope, analysis)
                    if analysis.action is not Action.PROMOTE:
                        raise GateFailed("analysis", analysis.summary())
                    detail = analysis.summary()
                case strategies.Verify():
                    result = verify(
                        env, release, outcome.baseline, new_instances, rec.stable_instances
                    )
                    outcome.verification = result
                    if not result.passed:
                        raise GateFailed("verification", "; ".join(result.reasons()))
                    detail = result.verdict.line()
            outcome.steps.append(
                StepRecord(step=strategies.describe(step), result="done", detail=detail)
            )
        if checks is not None:
            outcome.checks = run_checks(env.name, env.url, release, checks)
            if not outcome.checks.passed:
                raise GateFailed(
                    "checks",
                    f"end-to-end checks against {env.url}: {outcome.checks.line()}\n"
                    f"{outcome.checks.output_tail}",
                )
            outcome.steps.append(
                StepRecord(step="end-to-end checks", result="done", detail=outcome.checks.line())
            )
    except Preempted as exc:
        # A rollback took the environment over: no traffic change from here on, its
        # instances stay as the rollback left them (it retires what it left).
        outcome.failure = str(exc)
        outcome.steps.append(StepRecord(step="rollout", result="preempted", detail=str(exc)[:300]))
        ledger.append("failed", release, current_run_id(), reason=str(exc)[:500])
        _publish_report(outcome)
        raise
    except BaseException as exc:
        outcome.failure = str(exc)
        outcome.steps.append(StepRecord(step="rollout", result="failed", detail=str(exc)[:300]))
        try:
            _roll_back(env, release, rec.stable_instances, new_instances, exc)
            outcome.steps.append(
                StepRecord(
                    step="rollback", result="done", detail="traffic back on the stable release"
                )
            )
        finally:
            _publish_report(outcome)
        raise

    ledger.append(
        "verified",
        release,
        current_run_id(),
        previous=rec.stable.digest if rec.stable else None,
        verdict=outcome.verification.verdict.line() if outcome.verification else "",
        figures=recorded_figures(outcome.verification.samples) if outcome.verification else None,
    )
    _publish_report(outcome)
    logger.info("%s now serves %s (verified)", env.scope, release.label)
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
        revert(env, release, stable_instances, new_instances, str(cause), record_as="failed")
    except Preempted:
        env.ledger().append("failed", release, current_run_id(), reason=str(cause)[:500])
        raise
    except Exception as exc:
        raise RollbackFailed(
            f"rolling back {env.scope} after '{cause}' failed too: {exc}. Check `delivery "
            f"status`, then run `delivery rollback {env.name} --service {env.service}`."
        ) from exc


def _publish_analysis(where: str, analysis: StepAnalysis) -> None:
    """One table artifact per analysis step: every interval's numbers and decision."""
    try:
        publish_table(
            key=artifact_key("analysis", where, analysis.label),
            rows=[r.model_dump(mode="json") for r in analysis.intervals],
            description=f"{where}: {analysis.summary()}",
        )
    except Exception as exc:  # an artifact is a record, not a gate
        run_logger().warning("could not publish the analysis table: %s", exc)


def report_markdown(outcome: DeployOutcome) -> str:
    """Why the rollout was promoted or rolled back, with every measurement that decided it."""
    head = (
        f"# {outcome.strategy} deploy of `{outcome.release.label}` to {_where(outcome)}: "
        f"**{'rolled back' if outcome.failure else outcome.status}**\n"
    )
    if outcome.failure:
        head += f"\n> {outcome.failure.splitlines()[0][:500]}\n"
    if outcome.previous:
        head += f"\n- previous (stable): `{outcome.previous.label}`"
    if outcome.baseline:
        b = outcome.baseline
        head += (
            f"\n- baseline on the stable release: {b.requests} requests, "
            f"p95 {b.p95_ms or 0:.1f} ms, errors {b.errors}"
        )
    steps = "\n".join(
        f"| {s.step} | {s.result} | {s.detail.replace('|', '/')[:240]} |" for s in outcome.steps
    )
    body = f"\n\n## Steps\n\n| step | result | detail |\n|---|---|---|\n{steps}\n"
    for analysis in outcome.analyses:
        rows = "\n".join(
            f"| {r.elapsed_s} | {r.new_requests} | {r.new_errors} | {r.new_error_rate:.2%} | "
            f"{fmt_ms(r.new_p95_ms)} | {fmt_ms(r.stable_p95_ms)} | {r.outcome} | {r.action} |"
            for r in analysis.intervals
        )
        body += (
            f"\n## Analysis: {analysis.label} -> {analysis.action.value}\n\n"
            f"> {analysis.verdict.reason}\n\n"
            "| s | requests | errors | error rate | p95 new (interval) | p95 stable (interval) "
            f"| verdict | action |\n|---|---|---|---|---|---|---|---|\n{rows}\n"
        )
    if outcome.verification:
        v = outcome.verification
        body += (
            f"\n## Verification through {v.url}\n\n- health: {v.health_status}\n"
            f"- serving commits: {', '.join(c[:12] for c in v.serving_commits)}\n"
            f"- critical endpoints: {'; '.join(v.smoke_problems) or 'all as the manifest says'}\n"
            f"- {v.verdict.line()}\n"
        )
    if outcome.checks:
        c = outcome.checks
        body += f"\n## End-to-end checks against {outcome.url}\n\n- {c.line()}\n"
        if c.output_tail:
            body += "\n```\n" + c.output_tail.replace("`", "'") + "\n```\n"
    return head + body


def _where(outcome: DeployOutcome) -> str:
    return f"{outcome.environment}/{outcome.release.service}"


def _publish_report(outcome: DeployOutcome) -> None:
    where = _where(outcome)
    try:
        publish_table(
            key=artifact_key("deploy-steps", where),
            rows=[s.model_dump(mode="json") for s in outcome.steps],
            description=f"Steps of the {outcome.strategy} deploy of {outcome.release.label} "
            f"to {where}",
        )
        publish_markdown(
            markdown=report_markdown(outcome),
            key=artifact_key("deploy-report", where),
            description=f"Why {outcome.release.label} was "
            f"{'rolled back' if outcome.failure else 'promoted'} in {where}",
        )
    except Exception as exc:  # an artifact is a record, not a gate
        run_logger().warning("could not publish the deploy report: %s", exc)
    publish_rollout(where, rollout_runs(outcome), _picture_title(outcome))


def rollout_runs(outcome: DeployOutcome) -> list:
    """The analysis runs of a deploy, in order: its steps, then its verification."""
    verification = outcome.verification.analysis if outcome.verification else None
    return [*outcome.analyses, verification]


def _picture_title(outcome: DeployOutcome, more: str = "") -> str:
    how = "rolled back" if outcome.failure else "promoted"
    return f"{outcome.release.label} in {outcome.environment} ({outcome.strategy}, {how}){more}"

