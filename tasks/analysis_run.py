"""The analysis run: the one measuring loop behind every automatic judgement of a release.

Every ``interval_s`` the environment's metric sources (probes, the router's counters,
Prometheus) measure the new release's instances and, in the same interval and in parallel, the
stable release's instances; each interval's observations go to the one judge (tasks/judge,
anytime-valid: looking every interval does not raise the false-rollback probability above the
environment's alpha), with the stable release as the yardstick. Where no stable release runs
(a first release, a rollback target), the release is judged alone against the absolute limits
and, when it has them, its own recorded figures. What to do after each interval is a pure
function of the policy (:func:`decide`):

- ``step`` (a canary weight, a rolling replacement): Failed -> roll back now; Error (a source did
  not answer) -> measure again, after ``max_errors`` in a row roll back (never promote on
  missing numbers); at the end of the window Successful -> promote, Inconclusive -> extend the
  window up to ``max_extensions`` times, then roll back.
- ``verification`` (a bounded burst after the cutover): measure until the new release has
  ``min_requests`` requests, the stable one ``min_samples``, and the judge has had the
  intervals its latency test needs to be able to reject (``JudgePolicy.intervals_to_decide``;
  or the window is over), then
  Successful -> pass, anything else -> fail; Failed before that -> fail at once.
- ``bake`` (the monitored window after a production deploy, the previous release kept warm
  and measured beside it): Failed -> roll back now; at the end Successful -> keep it,
  Inconclusive (too few samples on a side) -> watched ``extension_s`` longer, up to
  ``max_extensions`` times, then rolled back (never passed silently).

An instance of the new release that stops running fails the run in every policy. This is
Argo Rollouts' AnalysisRun, with the policies as its templates.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from prefect import task
from pydantic import BaseModel, Field

from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.metrics import MetricScope, Samples, measure
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.tasks.analysis import Outcome, Verdict, judge_policy, observations
from prefect_delivery.tasks.judge import Analysis
from prefect_delivery.tasks.runtime.kill_points import kill_point
from prefect_delivery.tasks.runtime.lock import assert_not_preempted
from prefect_delivery.tasks.runtime.log import run_logger
from prefect_delivery.tasks.runtime.progress import WaitProgress, bake_window, canary_step

MAX_ERRORS_IN_A_ROW = 3
PolicyKind = Literal["step", "verification", "bake"]


class Action(StrEnum):
    CONTINUE = "continue"
    PROMOTE = "promote"
    EXTEND = "extend"
    ROLLBACK = "rollback"


class Policy(BaseModel):
    """How an analysis run measures and decides (see the module docstring)."""

    kind: PolicyKind
    window_s: float = Field(description="How long to measure (verification: at most).")
    interval_s: float = Field(description="How often to look at the metrics.")
    max_extensions: int = 0
    max_errors: int = MAX_ERRORS_IN_A_ROW
    min_requests: int | None = Field(
        default=None, description="verification: end once the new release has this many."
    )
    reference: Samples | None = Field(
        default=None,
        description="Where no stable release runs: the release's own recorded figures to judge "
        "it against (with the absolute limits); None: the absolute limits alone.",
    )
    tolerate_source_errors: bool = Field(
        default=False,
        description="Judge the numbers of the sources that answered when one did not "
        "(verification, bake); a step never promotes on missing numbers.",
    )
    extension_s: float | None = Field(
        default=None,
        description="How long one extension lasts (default: window_s). A bake that ends "
        "Inconclusive for want of samples is watched this much longer, up to max_extensions "
        "times, then rolled back.",
    )
    kill_point: str = "analysis"


def decide(
    verdict: Verdict,
    window_over: bool,
    extensions_used: int,
    max_extensions: int,
    errors_in_a_row: int,
    max_errors: int = MAX_ERRORS_IN_A_ROW,
    kind: PolicyKind = "step",
) -> Action:
    """What to do after one interval's verdict (pure)."""
    if verdict.outcome is Outcome.FAILED:
        return Action.ROLLBACK
    if kind == "bake":
        if not window_over:
            return Action.CONTINUE
        if verdict.outcome is Outcome.SUCCESSFUL:
            return Action.PROMOTE
        # too little evidence (a short bake, a busy machine): watch on, up to max_extensions
        short = verdict.outcome is Outcome.INCONCLUSIVE and extensions_used < max_extensions
        return Action.EXTEND if short else Action.ROLLBACK
    if verdict.outcome is Outcome.ERROR and kind == "step":
        return Action.ROLLBACK if errors_in_a_row >= max_errors else Action.CONTINUE
    if not window_over:
        return Action.CONTINUE
    if verdict.outcome is Outcome.SUCCESSFUL:
        return Action.PROMOTE
    if kind == "verification":
        return Action.ROLLBACK
    return Action.EXTEND if extensions_used < max_extensions else Action.ROLLBACK


class IntervalRecord(BaseModel):
    """One interval: this interval's own figures (for pictures), the totals so far, and the
    judge's verdict on all the evidence so far."""

    at: datetime
    elapsed_s: float
    new_requests: int  # so far
    new_errors: int
    new_error_rate: float
    new_p50_ms: float | None = None  # this interval
    new_p95_ms: float | None = None
    new_interval_error_rate: float = 0.0
    new_weight_pct: float | None = None  # the router's share of traffic on the new release
    stable_requests: int = 0  # so far
    stable_p50_ms: float | None = None  # this interval
    stable_p95_ms: float | None = None
    stable_interval_error_rate: float = 0.0
    outcome: str
    action: str
    reasons: str


class AnalysisRun(BaseModel):
    """What an analysis run measured and decided."""

    label: str
    policy: PolicyKind = "step"
    action: Action
    verdict: Verdict
    intervals: list[IntervalRecord] = Field(default_factory=list)
    extensions: int = 0
    seconds: float = 0.0
    new_samples: Samples | None = None
    stable_samples: Samples | None = None

    @property
    def passed(self) -> bool:
        return self.action is Action.PROMOTE

    def summary(self) -> str:
        return (
            f"{self.label}: {self.action.value} after {self.seconds:.1f}s "
            f"({len(self.intervals)} intervals, {self.extensions} extensions) - "
            f"{self.verdict.line()}"
        )


#: The name the deploy flow and its report use for a canary/rolling step's run.
StepAnalysis = AnalysisRun


def api_paths(release: Release) -> list[str]:
    """The endpoints probes hit: the manifest's critical endpoints, else the health path."""
    return [check.path for check in release.run.smoke] or [release.run.health_path]


def scope_for(
    env: Environment,
    label: str,
    instances: list[Instance],
    release: Release,
    queries: dict[str, str] | None = None,
) -> MetricScope:
    """The metric scope of some instances: their addresses, router slots and probe paths."""
    slots = {s.address: s.name for s in env.router.slots() if s.in_use}
    addresses = [i.address for i in instances if i.alive]
    return MetricScope(
        label=label,
        addresses=addresses,
        slots={a: slots[a] for a in addresses if a in slots},
        paths=api_paths(release),
        queries=queries or {},
    )


def _accumulate(total: Samples | None, batch: Samples) -> Samples:
    """Cumulative figures of a run (without the per-request lists); the error flag reflects
    the latest interval only."""
    batch = batch.summary()
    if total is None:
        return batch
    if batch.error:
        return total.model_copy(update={"error": batch.error})
    return total.model_copy(update={"error": None}).merged(batch)


def _progress(env: Environment, policy: Policy, label: str) -> WaitProgress | None:
    """A progress artifact for the long waits (a step's window, the bake); a verification
    burst lasts seconds and has none."""
    if policy.kind == "step":
        return canary_step(env.scope, label, policy.window_s).start()
    if policy.kind == "bake":
        return bake_window(env.scope, policy.window_s).start()
    return None


def _weight_pct(env: Environment, instances: list[Instance]) -> float | None:
    """The share of traffic (percent) the router gives these instances now (None: unknown)."""
    try:
        weights = env.router.weights()
    except Exception:  # noqa: BLE001 - a picture's detail, never a reason to stop judging
        return None
    total = sum(weights.values())
    mine = sum(weights.get(address, 0) for address in {i.address for i in instances})
    return round(100.0 * mine / total, 1) if total else 0.0


def _stopped(verdict: Verdict, gone: int) -> Verdict:
    return verdict.model_copy(
        update={
            "outcome": Outcome.FAILED,
            "reason": f"{gone} instance(s) of the new release stopped running; {verdict.reason}",
        }
    )


def run_analysis(
    env: Environment,
    release: Release,
    new_instances: list[Instance],
    stable_instances: list[Instance],
    policy: Policy,
    label: str,
) -> AnalysisRun:
    """Measure and judge the new release for the policy's window; returns the decision."""
    logger = run_logger()
    started = time.monotonic()
    deadline = started + policy.window_s
    extensions = errors_in_a_row = 0
    new_total: Samples | None = None
    stable_total: Samples | None = None
    records: list[IntervalRecord] = []
    sources = env.metric_sources()
    compared = bool(stable_instances)
    judge = Analysis(
        judge_policy(
            env.verification,
            policy.kind if compared else "rollback",
            horizon_s=policy.window_s,
            reference=None if compared else policy.reference,
        )
    )
    queries = {m.name: m.query for m in env.verification.service_metrics}
    progress = _progress(env, policy, label)
    while True:
        interval = max(0.2, min(policy.interval_s, deadline - time.monotonic()))
        new_scope = scope_for(env, "new", env.running(new_instances), release, queries)
        stable_scope = None
        if compared:
            stable = env.running(stable_instances)
            stable_scope = scope_for(env, "stable", stable, release, queries)
        tolerate = policy.tolerate_source_errors
        began = time.monotonic() - started
        with ThreadPoolExecutor(max_workers=2) as pool:
            new_future = pool.submit(measure, sources, new_scope, interval, env.router, tolerate)
            stable_future = (
                pool.submit(measure, sources, stable_scope, interval, env.router, tolerate)
                if stable_scope is not None
                else None
            )
            new_batch = new_future.result()
            stable_batch = stable_future.result() if stable_future is not None else None
        ended = time.monotonic() - started
        # after the interval, so an instance that died during it is noticed now
        gone = len(new_instances) - len(env.running(new_instances))
        new_total = _accumulate(new_total, new_batch)
        if stable_batch is not None:
            stable_total = _accumulate(stable_total, stable_batch)
            both_routed = policy.kind == "step"  # both sides take users' traffic
            verdict = judge.update(
                observations(new_batch, began, ended, both_routed),
                observations(stable_batch, began, ended, both_routed),
            )
        else:
            verdict = judge.update(observations(new_batch, began, ended))
        if gone:
            verdict = _stopped(verdict, gone)
        errors_in_a_row = errors_in_a_row + 1 if verdict.outcome is Outcome.ERROR else 0
        window_over = time.monotonic() >= deadline - 0.05 or (
            policy.min_requests is not None
            and new_total.requests >= policy.min_requests
            and (not compared or stable_total.requests >= judge.policy.min_samples)
            and len(records) + 1 >= judge.policy.intervals_to_decide()
        )
        action = decide(
            verdict,
            window_over,
            extensions,
            policy.max_extensions,
            errors_in_a_row,
            policy.max_errors,
            policy.kind,
        )
        records.append(
            IntervalRecord(
                at=datetime.now(UTC),
                elapsed_s=round(ended, 2),
                new_requests=new_total.requests,
                new_errors=new_total.errors,
                new_error_rate=round(new_total.error_rate, 4),
                new_p50_ms=new_batch.p50_ms,
                new_p95_ms=new_batch.p95_ms,
                new_interval_error_rate=round(new_batch.error_rate, 4),
                new_weight_pct=_weight_pct(env, new_instances),
                stable_requests=stable_total.requests if stable_total else 0,
                stable_p50_ms=stable_batch.p50_ms if stable_batch else None,
                stable_p95_ms=stable_batch.p95_ms if stable_batch else None,
                stable_interval_error_rate=round(stable_batch.error_rate, 4)
                if stable_batch
                else 0.0,
                outcome=verdict.outcome.value,
                action=action.value,
                reasons="; ".join([verdict.reason, *new_total.warnings])[:300],
            )
        )
        logger.info("%s %.1fs: %s -> %s", label, ended, verdict.line(), action.value)
        if progress is not None:
            progress.tick(note=f"{verdict.outcome.value}: {verdict.reason}"[:200])
        if action is Action.CONTINUE:
            kill_point(f"{policy.kill_point}-{env.name}")
            assert_not_preempted(env.key)  # a safe point: a rollback may have taken over
            continue
        if action is Action.EXTEND:
            extensions += 1
            extension = policy.extension_s or policy.window_s
            deadline = time.monotonic() + extension
            if progress is not None:
                progress.total_s += extension
            logger.info("%s: %s; watched %.0fs longer", label, verdict.reason, extension)
            continue
        break
    if progress is not None:
        progress.finish(f"{action.value}: {verdict.line()}"[:300])
    result = AnalysisRun(
        label=label,
        policy=policy.kind,
        action=action,
        verdict=verdict,
        intervals=records,
        extensions=extensions,
        seconds=time.monotonic() - started,
        new_samples=new_total,
        stable_samples=stable_total if compared else policy.reference,
    )
    logger.info("%s", result.summary())
    return result


@task(name="analyze", task_run_name="analyze {label}")
def analyze_step(
    env: Environment,
    release: Release,
    new_instances: list[Instance],
    stable_instances: list[Instance],
    label: str,
    window_s: float,
    interval_s: float,
    max_extensions: int,
) -> AnalysisRun:
    """A canary or rolling step: the new release against the stable one, side by side."""
    policy = Policy(
        kind="step", window_s=window_s, interval_s=interval_s, max_extensions=max_extensions
    )
    return run_analysis(env, release, new_instances, stable_instances, policy, label)
