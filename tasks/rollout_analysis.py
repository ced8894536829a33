"""Analysis of a rollout step (a canary weight, a rolling replacement) on live traffic.

Every ``interval_s`` the environment's metric sources measure the new release's instances and
the stable release's instances over the same interval, in parallel; the cumulative samples are
judged by :func:`tasks.analysis.analyze` with the stable release as the baseline. The decision
per interval is a pure function (:func:`decide`):

- Failed -> roll back now (a bad canary is caught within one interval once it has min_samples);
- Error (a source did not answer) -> measure again; after ``max_errors`` in a row, roll back
  (fail safe: never promote on missing numbers);
- at the end of the window: Successful -> promote; Inconclusive -> extend the window, up to
  ``max_extensions`` times, then roll back.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from enum import StrEnum

from prefect import task
from pydantic import BaseModel, Field

from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.metrics import MetricScope, Samples
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.tasks.analysis import Outcome, Verdict, analyze
from prefect_delivery.tasks.kill_points import kill_point
from prefect_delivery.tasks.log import run_logger
from prefect_delivery.tasks.verify import api_paths

MAX_ERRORS_IN_A_ROW = 3


class Action(StrEnum):
    CONTINUE = "continue"
    PROMOTE = "promote"
    EXTEND = "extend"
    ROLLBACK = "rollback"


def decide(
    verdict: Verdict,
    window_over: bool,
    extensions_used: int,
    max_extensions: int,
    errors_in_a_row: int,
    max_errors: int = MAX_ERRORS_IN_A_ROW,
) -> Action:
    """What to do after one interval's verdict (pure)."""
    if verdict.outcome is Outcome.FAILED:
        return Action.ROLLBACK
    if verdict.outcome is Outcome.ERROR:
        return Action.ROLLBACK if errors_in_a_row >= max_errors else Action.CONTINUE
    if not window_over:
        return Action.CONTINUE
    if verdict.outcome is Outcome.SUCCESSFUL:
        return Action.PROMOTE
    return Action.EXTEND if extensions_used < max_extensions else Action.ROLLBACK


class IntervalRecord(BaseModel):
    at: datetime
    elapsed_s: float
    new_requests: int
    new_errors: int
    new_error_rate: float
    new_p95_ms: float | None
    stable_p95_ms: float | None
    p95_limit_ms: float | None
    outcome: str
    action: str
    reasons: str


class StepAnalysis(BaseModel):
    label: str
    action: Action
    verdict: Verdict
    intervals: list[IntervalRecord] = Field(default_factory=list)
    extensions: int = 0
    seconds: float = 0.0
    new_samples: Samples | None = None
    stable_samples: Samples | None = None

    def summary(self) -> str:
        return (
            f"{self.label}: {self.action.value} after {self.seconds:.1f}s "
            f"({len(self.intervals)} intervals, {self.extensions} extensions) - "
            f"{self.verdict.line()}"
        )


def scope_for(label: str, instances: list[Instance], release: Release, router) -> MetricScope:
    slots = {s.address: s.name for s in router.servers() if s.in_use}
    addresses = [i.address for i in instances if i.alive]
    return MetricScope(
        label=label,
        addresses=addresses,
        servers={a: slots[a] for a in addresses if a in slots},
        paths=api_paths(release),
    )


def measure_scope(env: Environment, scope: MetricScope, window_s: float) -> Samples:
    sources = env.metric_sources()
    if not sources:
        return Samples(source="none", error="the environment has no metric source configured")
    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        results = list(pool.map(lambda s: s.measure(scope, window_s, env.router), sources))
    total = results[0]
    for other in results[1:]:
        total = total.merged(other)
    return total


def _accumulate(total: Samples | None, batch: Samples) -> Samples:
    """Cumulative samples of a step; the error flag reflects the latest interval only."""
    if total is None:
        return batch
    if batch.error:
        return total.model_copy(update={"error": batch.error})
    return total.model_copy(update={"error": None}).merged(batch)


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
) -> StepAnalysis:
    """Judge the new release against the stable one for a window; returns the decision."""
    logger = run_logger()
    started = time.monotonic()
    deadline = started + window_s
    extensions = errors_in_a_row = 0
    new_total: Samples | None = None
    stable_total: Samples | None = None
    records: list[IntervalRecord] = []
    while True:
        interval = max(0.2, min(interval_s, deadline - time.monotonic()))
        new_scope = scope_for("new", _alive(env, new_instances), release, env.router)
        stable_scope = scope_for("stable", _alive(env, stable_instances), release, env.router)
        with ThreadPoolExecutor(max_workers=2) as pool:
            new_future = pool.submit(measure_scope, env, new_scope, interval)
            stable_future = pool.submit(measure_scope, env, stable_scope, interval)
            new_batch, stable_batch = new_future.result(), stable_future.result()
        gone = len(new_instances) - len(new_scope.addresses)
        new_total = _accumulate(new_total, new_batch)
        stable_total = _accumulate(stable_total, stable_batch)
        baseline = stable_total if not stable_total.error else None
        verdict = analyze(new_total, env.verification, baseline)
        if gone:
            verdict = verdict.model_copy(
                update={
                    "outcome": Outcome.FAILED,
                    "reasons": [
                        f"{gone} instance(s) of the new release stopped running",
                        *verdict.reasons,
                    ],
                }
            )
        errors_in_a_row = errors_in_a_row + 1 if verdict.outcome is Outcome.ERROR else 0
        window_over = time.monotonic() >= deadline - 0.05
        action = decide(verdict, window_over, extensions, max_extensions, errors_in_a_row)
        records.append(
            IntervalRecord(
                at=datetime.now(UTC),
                elapsed_s=round(time.monotonic() - started, 2),
                new_requests=new_total.requests,
                new_errors=new_total.errors,
                new_error_rate=round(new_total.error_rate, 4),
                new_p95_ms=new_total.p95_ms,
                stable_p95_ms=stable_total.p95_ms,
                p95_limit_ms=verdict.p95_limit_ms,
                outcome=verdict.outcome.value,
                action=action.value,
                reasons="; ".join(verdict.reasons)[:300],
            )
        )
        logger.info(
            "%s %.1fs: %s -> %s", label, records[-1].elapsed_s, verdict.line(), action.value
        )
        kill_point(f"analysis-{env.name}")
        if action is Action.EXTEND:
            extensions += 1
            deadline = time.monotonic() + window_s
            continue
        if action is not Action.CONTINUE:
            break
    result = StepAnalysis(
        label=label,
        action=action,
        verdict=verdict,
        intervals=records,
        extensions=extensions,
        seconds=time.monotonic() - started,
        new_samples=new_total,
        stable_samples=stable_total,
    )
    logger.info("%s", result.summary())
    return result


def _alive(env: Environment, instances: list[Instance]) -> list[Instance]:
    running = {i.id: i for i in env.target.list(env.name)}
    return [running[i.id] for i in instances if i.id in running and running[i.id].alive]
