"""Monitor stage: the bake window after a production deploy.

For ``bake_s`` seconds an analysis run (the ``bake`` policy of tasks/analysis_run.py) measures
the new release's instances and the previous release's (kept warm, at weight 0) through the
environment's metric sources (probes, the router's counters, Prometheus), in the same
intervals, and the judge weighs sliding windows of that evidence: a regression that starts
late is caught within 1.5 windows of its start, one slow interval cannot fail a good hour. A
breach (an instance that died, a Failed verdict, an Inconclusive end) ends the bake with the
reason, and the flow rolls back by a weight change to the previous release. Without a warm
previous release (the first release here) the new one is judged against the absolute limits.
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


#: A bake that ends without min_samples on a side is watched this much longer, this many times
#: (a short bake on a busy machine), then rolled back: never passed on too little evidence.
BAKE_EXTENSION_S = 30.0
BAKE_EXTENSIONS = 3


@task(name="bake")
def bake(
    env: Environment,
    release: Release,
    instances: list[Instance],
    previous: list[Instance],
    duration_s: float,
    interval_s: float = 5.0,
) -> BakeResult:
    policy = Policy(
        kind="bake",
        window_s=duration_s,
        interval_s=interval_s,
        kill_point="bake",
        tolerate_source_errors=True,
        max_extensions=BAKE_EXTENSIONS,
        extension_s=min(duration_s, BAKE_EXTENSION_S),
    )
    stable = env.running(previous)
    run = run_analysis(env, release, instances, stable, policy, f"bake {env.name}")
    breached = run.action is Action.ROLLBACK
    reasons = [run.verdict.reason] if breached else []
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
