"""Delivery flow: one commit of a service from build to production.

    build -> test -> staging (deploy, verify) -> approval -> production (deploy, verify) -> monitor

Composition only. Each stage is a task (or the deploy subflow); a failed gate stops the run.
Production is reachable only through a verified staging of the same digest, checked against
the staging ledger, not assumed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow, unmapped
from prefect.futures import wait as wait_futures
from prefect.runtime import flow_run

from blocks.artifacts import ArtifactStore
from blocks.environment import Environment
from blocks.errors import ConfigError, DeliveryError, GateFailed
from blocks.release import Release
from flows.deploy import DeployOutcome, deploy
from tasks.approve import ApprovalDecision, auto_decision, request_approval
from tasks.build import build, checkout, lint
from tasks.deploy import restore, retire, retire_previous
from tasks.log import run_logger
from tasks.monitor import bake
from tasks.report import DeliverySummary
from tasks.source import resolve_source
from tasks.test import gate, merge, prepare_test_tree, record_durations, run_shard


class DeliveryFailed(DeliveryError):
    """The delivery stopped at a gate or a fault; carries the run's summary."""

    def __init__(self, message: str, summary: DeliverySummary):
        super().__init__(message)
        self.summary = summary


def default_shards() -> int:
    return max(2, min(4, os.cpu_count() or 2))


def _check_environments(names: list[str]) -> list[Environment]:
    if not names:
        raise ConfigError("environments", "is empty.", "pass e.g. ['staging', 'production'].")
    if len(set(names)) != len(names):
        raise ConfigError("environments", f"{names} names an environment twice.", None)
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
    return envs


def require_verified_upstream(upstream: Environment, release: Release) -> None:
    """Production only receives a digest its upstream environment verified."""
    verified = [r.digest for r in upstream.ledger().verified_releases()]
    if release.digest not in verified:
        raise GateFailed(
            "promotion",
            f"{release.label} was not verified in {upstream.name}; refusing to promote it.",
        )


@flow(name="delivery", flow_run_name="deliver {service_dir} @ {commit}", log_prints=True)
def delivery(
    service_dir: str,
    commit: str = "HEAD",
    environments: list[str] | None = None,
    auto_approve: bool = False,
    artifact_store: str = "artifacts",
    shards: int | None = None,
    approval_timeout_s: int = 3600,
) -> DeliverySummary:
    """Carry one commit of the service in ``service_dir`` through every environment in order.

    Args:
        service_dir: folder of the service (holds delivery.toml), inside a git repository.
        commit: the commit to deliver (a SHA or a ref), HEAD by default.
        environments: Environment block names in promotion order.
        auto_approve: satisfy approval gates automatically (recorded as such).
        artifact_store: name of the ArtifactStore block that keeps built wheels.
        shards: test shards run in parallel (default: CPU count, at least 2).
        approval_timeout_s: how long an approval gate waits for a human.
    """
    logger = run_logger()
    names = list(environments or ["staging", "production"])
    source = resolve_source(service_dir, commit)
    summary = DeliverySummary(service=Path(service_dir).name, commit=source.commit)
    envs = _check_environments(names)
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

        with summary.stage("test") as record:
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
                durations_file=unmapped(str(durations)),
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

        previous: Environment | None = None
        for env in envs:
            if previous is not None:
                require_verified_upstream(previous, release)
            if env.requires_approval:
                with summary.stage(f"approval {env.name}") as record:
                    decision = _approve(env, release, auto_approve, approval_timeout_s, summary)
                    record.detail = f"{decision.approver}: {decision.reason}"[:200]
                    if not decision.approved:
                        record.result = "rejected"
                        summary.outcome = "rejected"
                        summary.reason = f"{env.name} rejected by {decision.approver}"
                        break
            with summary.stage(env.name) as record:
                outcome = deploy(env.name, release)
                summary.urls[env.name] = env.url
                record.detail = _deploy_detail(outcome)
            if env.bake_s > 0 and outcome.status == "deployed":
                with summary.stage(f"monitor {env.name}") as record:
                    _monitor(env, release, outcome, record)
            if outcome.status == "deployed":
                retire_previous(env, outcome.previous_instances, outcome.cutover_at)
            previous = env
    except DeliveryError as exc:
        summary.outcome = "failed"
        summary.reason = str(exc).splitlines()[0][:300]
        _finish(summary)
        raise DeliveryFailed(str(exc), summary) from exc
    if summary.outcome == "running":
        summary.outcome = "delivered"
    _finish(summary)
    return summary


def _approve(
    env: Environment,
    release: Release,
    auto_approve: bool,
    timeout_s: int,
    summary: DeliverySummary,
) -> ApprovalDecision:
    if auto_approve:
        decision = auto_decision(env.name, release, by="auto-approve")
    else:
        decision = request_approval(env, release, summary, timeout_s, str(flow_run.get_id()))
    env.ledger().append(
        "approved" if decision.approved else "rejected",
        release,
        str(flow_run.get_id()),
        approver=decision.approver,
        reason=decision.reason,
        automatic=decision.automatic,
    )
    return decision


def _monitor(env: Environment, release: Release, outcome: DeployOutcome, record) -> None:
    result = bake(
        env,
        release,
        outcome.new_instances,
        outcome.baseline,
        env.bake_s,
        env.strategy.analysis_interval_s,
    )
    record.detail = (
        f"{result.watched_s:.0f}s, {result.verdict.line() if result.verdict else 'no samples'}"
    )
    if result.breached:
        record.result = "rolled back"
        restore(env, outcome.previous_instances, outcome.new_instances)
        retire(env, outcome.new_instances)
        env.ledger().append(
            "rolled-back", release, str(flow_run.get_id()), reason="; ".join(result.reasons)
        )
        raise GateFailed("monitor", f"bake window in {env.name}: " + "; ".join(result.reasons))


def _deploy_detail(outcome: DeployOutcome) -> str:
    if outcome.status == "already-live":
        return "already live and verified"
    verdict = outcome.verification.verdict.line() if outcome.verification else ""
    return f"{outcome.strategy}; {verdict}"


def _finish(summary: DeliverySummary) -> None:
    logger = run_logger()
    logger.info("\n%s", summary.text())
    try:
        summary.publish()
    except Exception as exc:  # the artifact is a record, not a gate
        logger.warning("could not publish the summary artifact: %s", exc)
