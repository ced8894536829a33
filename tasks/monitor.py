"""Monitor stage: the bake window after a production deploy.

For ``bake_s`` seconds an analysis run (the ``bake`` policy of tasks/analysis_run.py) measures
the new release's instances through the environment's metric sources (probes, the router's
counters, Prometheus) and judges the cumulative samples against the baseline at every interval.
A breach (an instance that died, a Failed verdict) ends the bake early with the reasons, and
the flow rolls back by a weight change to the previous release, which stayed warm the whole
time.
"""

from __future__ import annotations

from prefect import task
from pydantic import BaseModel

from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.metrics import Samples
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.tasks.analysis import Verdict
from prefect_delivery.tasks.analysis_run import Action, AnalysisRun, Policy, run_analysis
from prefect_delivery.tasks.runtime.log import run_logger


class BakeResult(BaseModel):
    environment: str
    release: Release
    planned_s: float
    watched_s: float
    intervals: int
    samples: Samples | None
    verdict: Verdict | None
    breached: bool
    reasons: list[str]
    analysis: AnalysisRun | None = None


@task(name="bake")
def bake(
    env: Environment,
    release: Release,
    instances: list[Instance],
    baseline: Samples | None,
    duration_s: float,
    interval_s: float = 5.0,
) -> BakeResult:
    policy = Policy(
        kind="bake",
        window_s=duration_s,
        interval_s=interval_s,
        baseline=baseline,
        kill_point="bake",
        tolerate_source_errors=True,
    )
    run = run_analysis(env, release, instances, [], policy, f"bake {env.name}")
    breached = run.action is Action.ROLLBACK
    reasons = list(run.verdict.reasons) if breached else []
    if breached:
        run_logger().error(
            "Bake of %s in %s breached: %s", release.label, env.name, "; ".join(reasons)
        )
    return BakeResult(
        environment=env.name,
        release=release,
        planned_s=duration_s,
        watched_s=run.seconds,
        intervals=len(run.intervals),
        samples=run.new_samples,
        verdict=run.verdict,
        breached=breached,
        reasons=reasons,
        analysis=run,
    )
