"""Delivery flow: one commit of a service from build to production.

    build -> test -> staging (deploy, verify) -> approval -> production (deploy, verify) -> monitor

Composition only. Each stage is a task (or the deploy subflow); a failed gate stops the run.
Production is reachable only through a verified staging of the same digest, checked against
the staging ledger, not assumed.

Final states (what ``prefect deployment run ... --watch`` exits with):

- Completed (exit 0): the release reached every environment (production included).
- Failed (exit 1): a gate or a fault stopped it; ``Rejected`` when the approver said no and
  ``ApprovalTimedOut`` when nobody answered in time (both Failed-type states: nothing past the
  gate was touched, and CI must not count the run as a release).

A run that waits with ``approval_mode="suspend"`` is started again from the top after the
answer: the build is once per commit, a passing test suite once per commit and digest
(tasks/test_record.py), and an environment this run already finished is skipped
(tasks/checkpoint.py), so everything before the gate is idempotent.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from prefect import flow, unmapped
from prefect.futures import wait as wait_futures
from prefect.runtime import deployment
from prefect.states import Failed
from pydantic import ValidationError

from prefect_delivery.blocks.artifacts import ArtifactStore
from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.errors import (
    ConfigError,
    DeliveryError,
    GateFailed,
    InfrastructureError,
    InternalError,
    VerdictError,
)
from prefect_delivery.blocks.release import Release
from prefect_delivery.flows.deploy import DeployOutcome, deploy, rollout_runs
from prefect_delivery.flows.migration import migrate
from prefect_delivery.flows.rollback import roll_back_environment
from prefect_delivery.tasks.approve import (
    ApprovalDecision,
    UpstreamEvidence,
    auto_decision,
    record_decision,
    request_approval,
    upstream_evidence,
)
from prefect_delivery.tasks.build import build, checkout, lint
from prefect_delivery.tasks.checks import Checks
from prefect_delivery.tasks.deploy import retire_previous
from prefect_delivery.tasks.dora_report import publish_after_delivery
from prefect_delivery.tasks.manifest import describe_validation_error
from prefect_delivery.tasks.migrate import migration_phase
from prefect_delivery.tasks.monitor import bake
from prefect_delivery.tasks.pictures import publish_rollout
from prefect_delivery.tasks.promotion import check_request
from prefect_delivery.tasks.revert import revert
from prefect_delivery.tasks.runtime import checkpoint, events
from prefect_delivery.tasks.runtime.commit_param import CommitInput, commit_id
from prefect_delivery.tasks.runtime.context import current_run_id
from prefect_delivery.tasks.runtime.kill_points import kill_point
from prefect_delivery.tasks.runtime.lock import environment_lock
from prefect_delivery.tasks.runtime.log import run_logger
from prefect_delivery.tasks.runtime.report import DeliverySummary
from prefect_delivery.tasks.runtime.tags import service_tags, tag_run
from prefect_delivery.tasks.runtime.test_record import passed_before, record_pass
from prefect_delivery.tasks.runtime.traffic import Preempted
from prefect_delivery.tasks.source import resolve_source, service_name_at
from prefect_delivery.tasks.test import (
    SuiteReport,
    durations_snapshot,
    gate,
    merge,
    prepare_test_tree,
    record_durations,
    run_shard,
)


class DeliveryFailed(DeliveryError):
    """The delivery stopped at a gate or a fault; carries the run's summary.

    Raised as the kind of what stopped it (:meth:`of`): bad input, a verdict or a fault."""

    def __init__(self, message: str, summary: DeliverySummary):
        Exception.__init__(self, message)
        self.summary = summary

    def __reduce__(self):  # picklable with its summary (a persisted Failed state's data)
        return (type(self), (str(self), self.summary))

    @staticmethod
    def of(cause: BaseException, summary: DeliverySummary) -> DeliveryFailed:
        if isinstance(cause, ConfigError):
            return DeliveryRefused(str(cause), summary, cause)
        if isinstance(cause, InfrastructureError):
            return DeliveryBroken(str(cause), summary)
        if isinstance(cause, InternalError):
            return DeliveryBug(str(cause), summary)
        return DeliveryStopped(str(cause), summary)


class DeliveryRefused(DeliveryFailed, ConfigError):
    """Stopped by bad input (nothing live changed)."""

    def __init__(self, message: str, summary: DeliverySummary, cause: ConfigError | None = None):
        DeliveryFailed.__init__(self, message, summary)
        self.where = cause.where if cause else "delivery"
        self.problem = cause.problem if cause else message
        self.fix = cause.fix if cause else None

    def __reduce__(self):
        return (type(self), (str(self), self.summary))


class DeliveryStopped(DeliveryFailed, VerdictError):
    """Stopped by a verdict: a gate said no."""


class DeliveryBroken(DeliveryFailed, InfrastructureError):
    """Stopped by a fault of the machinery that its retries did not overcome."""


class DeliveryBug(DeliveryFailed, InternalError):
    """Stopped by a fault of prefect-delivery's own code (reported as such, never as bad
    input)."""


#: Names of the Failed-type final states of a run that stopped at the approval gate.
FINAL_STATE_NAMES = {
    "rejected": "Rejected",
    "timed-out": "ApprovalTimedOut",
    "preempted": "Preempted",
}


def default_shards() -> int:
    return max(2, min(4, os.cpu_count() or 2))


def _check_environments(names: list[str]) -> list[Environment]:
    if not names:
        raise ConfigError("environments", "is empty.", "pass e.g. ['staging', 'production'].")
    if len(set(names)) != len(names):
        raise ConfigError(
            "environments",
            f"{names} names an environment twice.",
            "name each environment once, in delivery order (e.g. staging, production)",
        )
    envs = []
    for name in names:
        try:
            envs.append(Environment.load(name))
        except ValueError as exc:
            raise ConfigError(
                f"environment {name!r}",
                f"no Environment block of that name ({exc}).",
                "create it (see `delivery demo` or the README), or fix the name.",
            ) from None
        except RuntimeError as exc:  # Prefect: the saved block no longer validates
            cause = exc.__cause__
            detail = (
                describe_validation_error("", cause)
                if isinstance(cause, ValidationError)
                else str(exc)
            )
            raise ConfigError(
                f"Environment block {name!r}",
                f"is saved with settings that are not valid:\n{detail}",
                f"correct them in the Prefect UI (Blocks) or save the block again "
                f"(`delivery setup`, or Environment(...).save({name!r}, overwrite=True))",
            ) from None
    return envs


def _for_service(envs: list[Environment], service: str, service_dir: str) -> list[Environment]:
    """Each environment as the service sees it (its route there: router, instances, ledger,
    database); a service with no route in one of them is refused here, before anything
    runs. A route adopted from a setup saved before services is saved now."""
    scoped = [env.for_service(service, service_dir) for env in envs]
    for env in scoped:
        env.keep_adopted()
        env.instance_env()  # every Secret block it names must exist before anything runs
        env.remember()
    return scoped


def require_verified_upstream(upstream: Environment, release: Release) -> None:
    """The environment before this one in the run must have verified the digest (in the
    service's own history there)."""
    verified = [r.digest for r in upstream.history(release.service).verified_releases()]
    if release.digest not in verified:
        raise GateFailed(
            "promotion",
            f"{release.label} was not verified in {upstream.name}; refusing to promote it.",
        )


def _verified_commits(service: str):
    """Environment name -> commits of ``service`` its ledger records as verified (for the
    policy check)."""

    def verified(name: str) -> set[str]:
        try:
            env = Environment.load(name)
        except (ValueError, RuntimeError):
            return set()
        return {r.commit for r in env.history(service).verified_releases()}

    return verified


def _source(service_dir: str, commit: CommitInput, envs: list[Environment], run_id):
    """The commit to deliver: what this run resolved when it first started (a run restarted
    after a suspended approval delivers that, not what HEAD names now), else ``commit``."""
    asked = commit_id(commit)
    source = resolve_source(service_dir, asked)
    pinned = checkpoint.pinned_commit(envs[0].state_dir, run_id)
    if pinned and pinned != source.commit:
        run_logger().warning(
            "This run resolved %r to %s when it started; delivering that commit (it now names %s)",
            asked,
            pinned,
            source.commit,
        )
        source = resolve_source(service_dir, pinned)
    checkpoint.pin_commit(envs[0].state_dir, run_id, source.commit, str(asked))
    return source


@flow(name="delivery", flow_run_name="deliver {service_dir} @ {commit}", log_prints=True)
def delivery(
    service_dir: str,
    commit: CommitInput = "HEAD",
    environments: list[str] | None = None,
    auto_approve: bool = False,
    artifact_store: str = "artifacts",
    shards: int | None = None,
    approval_timeout_s: int = 3600,
    approval_mode: Literal["pause", "suspend"] = "pause",
    on_busy: Literal["wait", "refuse"] = "wait",
) -> DeliverySummary:
    """Carry one commit of the service in ``service_dir`` through every environment in order.

    Args:
        service_dir: folder of the service (holds delivery.toml), inside a git repository;
            relative paths are resolved from the working directory (the project folder in
            a deployment).
        commit: the commit to deliver (a SHA or a ref), HEAD by default. Numbers that
            `prefect deployment run -p commit=...` parsed as JSON are taken back as the
            digits typed; a float is refused (quote it: -p 'commit="1e10"').
        environments: Environment block names in promotion order.
        auto_approve: satisfy approval gates automatically (recorded as such).
        artifact_store: name of the ArtifactStore block that keeps built wheels.
        shards: test shards run in parallel (default: CPU count, at least 2).
        approval_timeout_s: how long an approval gate waits for a human.
        approval_mode: "pause" keeps the run's process waiting at the gate; "suspend" exits
            it (nothing is held while a person decides) and restarts the run from the top
            after the answer (deployments only).
        on_busy: when another delivery holds an environment (one at a time per environment,
            through a Prefect global concurrency limit): "wait" for it, or "refuse" and stop.
    """
    logger = run_logger()
    names = list(environments or ["staging", "production"])
    run_id = current_run_id()
    if approval_mode == "suspend" and not deployment.id:
        raise ConfigError(
            "approval_mode",
            "'suspend' needs a run of a deployment (a worker restarts it after the answer).",
            "run it through a deployment (prefect.yaml), or use approval_mode='pause'.",
        )
    envs = _check_environments(names)
    source = _source(service_dir, commit, envs, run_id)
    service = service_name_at(source)
    envs = _for_service(envs, service, service_dir)
    tag_run(run_id, service)
    check_request(envs, source.commit, auto_approve, _verified_commits(service))
    summary = DeliverySummary(service=service, commit=source.commit)
    store = ArtifactStore.load(artifact_store)
    count = shards or default_shards()

    try:
        with summary.stage("build") as record:
            co = checkout(source)
            summary.service = co.manifest.service.name
            lint(co)
            release = build(co, store)
            summary.release = release
            record.detail = f"{release.artifact.filename} {release.digest}"
        kill_point("after-build")

        with summary.stage("test") as record:
            passed = passed_before(store.root, release)
            if passed is None:
                report = _run_tests(co, release, store, count, record)
                record_pass(store.root, release, report, run_id)
            else:
                record.detail = (
                    f"{passed.report.summary()}; reused: passed for this commit and digest "
                    f"at {passed.recorded_at:%Y-%m-%d %H:%M:%S} UTC"
                )
                logger.info("Tests: %s", record.detail)
        kill_point("after-test")

        previous: Environment | None = None
        evidence: UpstreamEvidence | None = None
        for env in envs:
            if previous is not None:
                require_verified_upstream(previous, release)
            if env.promotion.upstream and env.promotion.upstream != getattr(previous, "name", None):
                upstream = Environment.load(env.promotion.upstream)
                require_verified_upstream(upstream, release)
            if env.requires_approval:
                with summary.stage(f"approval {env.name}") as record:
                    decision = _approve(
                        env,
                        release,
                        auto_approve,
                        approval_timeout_s,
                        approval_mode,
                        evidence,
                        summary,
                        run_id,
                    )
                    record.detail = f"{decision.approver}: {decision.reason}"[:200]
                    if not decision.approved:
                        record.result = "timed out" if decision.timed_out else "rejected"
                        summary.outcome = decision.kind
                        summary.reason = (
                            f"{env.name}: approval timed out after {approval_timeout_s}s; "
                            f"{env.name} was not touched"
                            if decision.timed_out
                            else f"{env.name} rejected by {decision.approver}: {decision.reason}"
                        )[:300]
                        break
            done = checkpoint.finished(env.state_dir, run_id, env.name, release)
            if done is not None:
                with summary.stage(env.name) as record:
                    record.result = "skipped"
                    record.detail = f"finished earlier in this run: {done.detail}"[:200]
                    summary.urls[env.name] = env.url
                logger.info("%s: this run already finished it (%s)", env.name, done.detail)
                evidence = done.evidence
                previous = env
                continue
            with (
                environment_lock(env.key, env.state_dir, run_id or "local", on_busy),
                service_tags(env.service),
            ):
                evidence = _roll_out(env, release, previous, summary, run_id, _checks(co))
            previous = env
    except Preempted as exc:
        summary.outcome = "preempted"
        summary.reason = str(exc).splitlines()[0][:300]
    except DeliveryError as exc:
        summary.outcome = "failed"
        summary.reason = str(exc).splitlines()[0][:300]
        _finish(summary)
        raise DeliveryFailed.of(exc, summary) from exc
    except Exception as exc:  # a bug of ours: said as one, never as the user's input
        run_logger().exception("internal error")
        bug = InternalError.of(exc, f"the logs of flow run {run_id or '(this run)'}")
        summary.outcome = "failed"
        summary.reason = str(bug)[:300]
        _finish(summary)
        raise DeliveryFailed.of(bug, summary) from exc
    if summary.outcome in FINAL_STATE_NAMES:
        _finish(summary)
        # Not Completed: `prefect deployment run --watch` exits 0 only for a release that
        # reached production. The summary travels as the state's data (raised in-process).
        return Failed(
            name=FINAL_STATE_NAMES[summary.outcome],
            message=summary.reason,
            data=DeliveryStopped(summary.reason, summary),
        )
    if summary.outcome == "running":
        summary.outcome = "delivered"
    _finish(summary)
    return summary


def _roll_out(
    env: Environment,
    release: Release,
    previous: Environment | None,
    summary: DeliverySummary,
    run_id: str | None,
    checks: Checks | None = None,
) -> UpstreamEvidence:
    """Deploy, verify, check and bake the release in one environment (its slot held by the
    caller)."""
    kill_point(f"before-{env.name}")
    if env.database is not None:  # the schema first: each phase before the code that needs it
        with summary.stage(f"migrate {env.name}") as record:
            record.detail = migrate(env.name, release).detail
    with summary.stage(env.name) as record, _failures_as_events(env, release):
        outcome = deploy(env.name, release, checks)
        summary.urls[env.name] = env.url
        record.detail = deployed_detail = _deploy_detail(outcome)
    kill_point(f"deployed-{env.name}")
    if outcome.status == "deployed":
        events.deployed(
            env.name,
            release,
            outcome.strategy,
            outcome.verification.verdict.line() if outcome.verification else "",
        )
    # A bake cut short (a crashed run) is watched again by the re-run, from the start.
    if env.bake_s > 0 and (outcome.status == "deployed" or not env.ledger().baked(release.digest)):
        with summary.stage(f"monitor {env.name}") as record:
            _monitor(env, release, outcome, record)
    retire_previous(env, outcome.previous_instances, outcome.cutover_at)
    if outcome.status == "deployed" and previous is not None:
        events.promoted(env.name, release, upstream=previous.name)
    evidence = upstream_evidence(
        env,
        release,
        outcome.verification.verdict if outcome.verification else None,
        outcome.verification.samples if outcome.verification else None,
    )
    checkpoint.mark_finished(
        env.state_dir, run_id, env.name, release, outcome.status, deployed_detail, evidence
    )
    return evidence


def _checks(co) -> Checks | None:
    """The manifest's end-to-end checks, run from the commit's tree (tasks/checks.py)."""
    section = co.manifest.checks
    if section is None:
        return None
    return Checks(command=section.command, source_dir=co.path, timeout_s=section.timeout_s)


def _run_tests(co, release: Release, store: ArtifactStore, count: int, record) -> SuiteReport:
    """The suite in parallel shards (mapped tasks); returns the merged report after the gate."""
    logger = run_logger()
    started = time.perf_counter()
    artifact_dir = prepare_test_tree(Path(co.path), release, co.manifest.test.paths)
    durations = Path(store.root) / release.service / "test-durations.json"
    futures = run_shard.map(
        source_dir=unmapped(co.path),
        artifact_dir=unmapped(str(artifact_dir)),
        paths=unmapped(co.manifest.test.paths),
        index=list(range(count)),
        count=unmapped(count),
        timeout_s=unmapped(co.manifest.test.timeout_s),
        durations=unmapped(durations_snapshot(durations)),
        extra_args=unmapped(co.manifest.test.pytest_args),
    )
    wait_futures(futures)
    report = merge([f.result() for f in futures], time.perf_counter() - started)
    record.detail = report.summary()
    logger.info(
        "Tests: %s; slowest: %s",
        report.summary(),
        [f"{c.nodeid} {c.seconds:.2f}s" for c in report.slowest],
    )
    gate(report)
    record_durations([c for f in futures for c in f.result().cases], durations)
    return report


@contextmanager
def _failures_as_events(env: Environment, release: Release):
    """A verdict against the release in an environment becomes a verification-failed event
    (source: pipeline; the deploy flow has already put traffic back and said so)."""
    try:
        yield
    except Preempted:
        raise  # not a verdict on the release: a rollback took over (it says so itself)
    except VerdictError as exc:
        gate_name = getattr(exc, "gate", "verification")
        events.verification_failed(env.name, release, str(exc)[:500], gate=gate_name)
        raise


def _approve(
    env: Environment,
    release: Release,
    auto_approve: bool,
    timeout_s: int,
    mode: str,
    evidence: UpstreamEvidence | None,
    summary: DeliverySummary,
    run_id: str | None,
) -> ApprovalDecision:
    if auto_approve:
        decision = auto_decision(env.name, release, by="auto-approve")
    else:
        decision = request_approval(
            env,
            release,
            evidence,
            summary.markdown(),
            timeout_s,
            run_id or "",
            mode=mode,
            migration_phase=migration_phase(env, release),
        )
    record_decision(env, decision, run_id)
    return decision


def _monitor(env: Environment, release: Release, outcome: DeployOutcome, record) -> None:
    result = bake(
        env,
        release,
        outcome.new_instances,
        outcome.previous_instances,
        env.bake_s,
        env.strategy.analysis_interval_s,
    )
    record.detail = (
        f"{result.watched_s:.0f}s, {result.verdict.line() if result.verdict else 'no samples'}"
    )
    kept = "rolled back in the bake" if result.breached else "kept after its bake"
    publish_rollout(
        env.scope,
        [*rollout_runs(outcome), result.analysis],
        f"{release.label} in {env.name} ({outcome.strategy}, {kept})",
    )
    if result.breached:
        record.result = "rolled back"
        reason = "; ".join(result.reasons)
        warm = env.running(outcome.previous_instances)
        if warm:
            revert(
                env,
                release,
                warm,
                outcome.new_instances,
                f"bake window: {reason}",
                to=outcome.previous,
            )
        else:
            # The previous release was retired already: start it again from its artifact.
            roll_back_environment(env, None, f"bake window: {reason}")
        events.verification_failed(env.name, release, reason, gate="monitor")
        raise GateFailed("monitor", f"bake window in {env.name}: {reason}")
    env.ledger().append("baked", release, current_run_id(), seconds=round(result.watched_s, 1))


def _deploy_detail(outcome: DeployOutcome) -> str:
    if outcome.status == "already-live":
        return "already live and verified"
    verdict = outcome.verification.verdict.line() if outcome.verification else ""
    checks = f"; checks: {outcome.checks.line()}" if outcome.checks else ""
    return f"{outcome.strategy}; {verdict}{checks}"


def _finish(summary: DeliverySummary) -> None:
    logger = run_logger()
    logger.info("\n%s", summary.text())
    try:
        summary.publish()
    except Exception as exc:  # the artifact is a record, not a gate
        logger.warning("could not publish the summary artifact: %s", exc)
    publish_after_delivery(summary)  # DORA figures (tasks/dora_report.py); never raises
