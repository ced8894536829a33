"""Verify stage: judge an environment through its frontend, the way its users reach it.

Health must answer 200, the frontend must serve the release being verified (its version path
reports the commit), every critical endpoint must answer as the manifest says, and a burst of
probe requests must meet the thresholds against the baseline measured on the previous release.
A failed verification is a verdict: it is returned, and the deploy flow rolls back.
"""

from __future__ import annotations

import httpx
from prefect import task
from pydantic import BaseModel

from blocks.environment import Environment
from blocks.metrics import Samples
from blocks.probe import probe, smoke
from blocks.release import Release
from tasks.analysis import Verdict, analyze
from tasks.log import run_logger


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


@task(name="verify")
def verify(env: Environment, release: Release, baseline: Samples | None) -> VerificationResult:
    logger = run_logger()
    status = health_status(env.url, release.run.health_path)
    commits = serving_commits(env.url, release)
    problems = smoke(env.url, release.run.smoke, timeout_s=env.verification.timeout_s)
    samples = measure(env, release, f"verify {release.version}")
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
