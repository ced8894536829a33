"""Monitor stage: the bake window after a production deploy.

For ``bake_s`` seconds the environment is probed through its frontend and its new instances are
watched; the cumulative samples are judged against the baseline at every interval. A breach
(an instance that died, a Failed verdict) ends the bake early with the reasons, and the flow
rolls back by a weight change to the previous release, which stayed warm the whole time.
"""

from __future__ import annotations

import time

from prefect import task
from pydantic import BaseModel

from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.metrics import Samples
from prefect_delivery.blocks.probe import probe
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.tasks.analysis import Outcome, Verdict, analyze
from prefect_delivery.tasks.kill_points import kill_point
from prefect_delivery.tasks.log import run_logger
from prefect_delivery.tasks.verify import api_paths


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


@task(name="bake")
def bake(
    env: Environment,
    release: Release,
    instances: list[Instance],
    baseline: Samples | None,
    duration_s: float,
    interval_s: float = 5.0,
) -> BakeResult:
    logger = run_logger()
    started = time.monotonic()
    deadline = started + duration_s
    total: Samples | None = None
    verdict: Verdict | None = None
    intervals = 0
    reasons: list[str] = []
    ids = {i.id for i in instances}
    while time.monotonic() < deadline:
        window = min(interval_s, max(0.1, deadline - time.monotonic()))
        batch = probe(
            env.url,
            api_paths(release),
            duration_s=window,
            concurrency=2,
            timeout_s=env.verification.timeout_s,
            source=f"bake probe via {env.url}",
        )
        total = batch if total is None else total.merged(batch)
        intervals += 1
        running = {i.id for i in env.target.list(env.name) if i.alive}
        gone = sorted(ids - running)
        if gone:
            reasons.append(f"instance(s) {gone} of {release.label} stopped running")
        verdict = analyze(total, env.verification, baseline)
        if verdict.outcome is Outcome.FAILED:
            reasons += verdict.reasons
        if reasons:
            break
        kill_point(f"bake-{env.name}")
        logger.info(
            "Bake %s %.0f/%.0fs: %s",
            env.name,
            time.monotonic() - started,
            duration_s,
            verdict.line(),
        )
    watched = time.monotonic() - started
    if reasons:
        logger.error("Bake of %s in %s breached: %s", release.label, env.name, "; ".join(reasons))
    return BakeResult(
        environment=env.name,
        release=release,
        planned_s=duration_s,
        watched_s=watched,
        intervals=intervals,
        samples=total,
        verdict=verdict,
        breached=bool(reasons),
        reasons=reasons,
    )
