"""Verify stage: judge an environment through its frontend, the way its users reach it.

Health must answer 200, the frontend must serve the release being verified (its version path
reports the commit), every critical endpoint must answer as the manifest says, and a burst of
probe requests must meet the thresholds against the baseline measured on the previous release.
A failed verification is a verdict: it is returned, and the deploy flow rolls back.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from prefect import task
from pydantic import BaseModel

from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.metrics import Samples
from prefect_delivery.blocks.probe import probe, smoke
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.tasks.analysis import Verdict, analyze
from prefect_delivery.tasks.log import run_logger


class VerificationResult(BaseModel):
    environment: str
    url: str
    release: Release
    health_status: int | None
    serving_commits: list[str]
    smoke_problems: list[str]
    verdict: Verdict
    baseline: Samples | None
    samples: Samples

    @property
    def passed(self) -> bool:
        return (
            self.health_status == 200
            and self.serving_commits == [self.release.commit]
            and not self.smoke_problems
            and self.verdict.passed
        )

    def reasons(self) -> list[str]:
        reasons = []
        if self.health_status != 200:
            reasons.append(f"health {self.release.run.health_path} answered {self.health_status}")
        if self.serving_commits != [self.release.commit]:
            reasons.append(
                f"frontend serves commits {[c[:10] for c in self.serving_commits]}, "
                f"expected only {self.release.commit[:10]}"
            )
        reasons += self.smoke_problems
        if not self.verdict.passed:
            reasons.append(self.verdict.line())
        return reasons


def api_paths(release: Release) -> list[str]:
    return [check.path for check in release.run.smoke] or [release.run.health_path]


def serving_commits(url: str, release: Release, requests: int = 10) -> list[str]:
    """Which commits the frontend answers with, over a few requests (sorted, unique)."""
    seen: set[str] = set()
    with httpx.Client(timeout=5) as client:
        for _ in range(requests):
            try:
                seen.add(str(client.get(url + release.run.version_path).json().get("commit")))
            except (httpx.HTTPError, ValueError, AttributeError):
                seen.add("<no answer>")
    return sorted(seen)


def health_status(url: str, path: str) -> int | None:
    try:
        return httpx.get(url + path, timeout=5).status_code
    except httpx.HTTPError:
        return None


def measure(env: Environment, release: Release, label: str) -> Samples:
    settings = env.verification
    return probe(
        env.url,
        api_paths(release),
        requests=settings.requests,
        concurrency=settings.concurrency,
        timeout_s=settings.timeout_s,
        source=f"probe {label} via {env.url}",
    )


@task(name="baseline")
def measure_baseline(env: Environment, stable: Release) -> Samples:
    """Probe the stable release through the frontend before the new one takes traffic."""
    samples = measure(env, stable, f"baseline {stable.version}")
    run_logger().info(
        "Baseline on %s: %d requests, p95 %.1fms, errors %d",
        stable.label,
        samples.requests,
        samples.p95_ms or 0,
        samples.errors,
    )
    return samples


def side_by_side(
    env: Environment, release: Release, new: list[Instance], previous: list[Instance]
) -> tuple[Samples, Samples]:
    """Latency of the new and the previous release's instances, probed directly and at the
    same time, so both see the same machine load (a fair baseline on a busy box)."""
    settings = env.verification
    paths = api_paths(release)

    def run(instances: list[Instance], label: str, requests: int) -> Samples:
        per = max(1, requests // max(1, len(instances)))
        total: Samples | None = None
        for instance in instances:
            batch = probe(
                instance.url,
                paths,
                requests=per,
                concurrency=max(1, settings.concurrency // 2),
                timeout_s=settings.timeout_s,
                source=f"probe {label} direct",
            )
            total = batch if total is None else total.merged(batch)
        return total

    for instance in new:  # warm up: first requests of a fresh process pay for lazy imports
        probe(instance.url, paths, requests=20, concurrency=1, timeout_s=settings.timeout_s)
    with ThreadPoolExecutor(max_workers=2) as pool:
        new_future = pool.submit(run, new, f"new {release.version}", settings.requests)
        old_future = pool.submit(run, previous, "previous", settings.requests)
        return new_future.result(), old_future.result()


@task(name="verify")
def verify(
    env: Environment,
    release: Release,
    baseline: Samples | None,
    new_instances: list[Instance] | None = None,
    previous_instances: list[Instance] | None = None,
) -> VerificationResult:
    """Judge the environment through its frontend.

    Error rate comes from probes through the frontend. Latency is judged against the previous
    release measured side by side when its instances still run (kept warm), else against the
    baseline measured before the cutover.
    """
    logger = run_logger()
    status = health_status(env.url, release.run.health_path)
    commits = serving_commits(env.url, release)
    problems = smoke(env.url, release.run.smoke, timeout_s=env.verification.timeout_s)
    samples = measure(env, release, f"verify {release.version}")
    running = {i.id for i in env.target.list(env.name) if i.alive}
    previous = [i for i in previous_instances or [] if i.id in running]
    new = [i for i in new_instances or [] if i.id in running]
    if previous and new:
        new_latency, baseline = side_by_side(env, release, new, previous)
        samples = samples.model_copy(
            update={
                "p50_ms": new_latency.p50_ms,
                "p95_ms": new_latency.p95_ms,
                "p99_ms": new_latency.p99_ms,
                "source": f"{samples.source}; latency side by side with the previous release",
            }
        )
    verdict = analyze(samples, env.verification, baseline)
    result = VerificationResult(
        environment=env.name,
        url=env.url,
        release=release,
        health_status=status,
        serving_commits=commits,
        smoke_problems=problems,
        verdict=verdict,
        baseline=baseline,
        samples=samples,
    )
    if result.passed:
        logger.info("Verification of %s in %s passed: %s", release.label, env.name, verdict.line())
    else:
        logger.warning(
            "Verification of %s in %s FAILED: %s",
            release.label,
            env.name,
            "; ".join(result.reasons()),
        )
    return result
