"""Verify stage: judge an environment through its frontend, the way its users reach it.

Health must answer 200, the frontend must serve only the release being verified (the router
names the instance behind every answer; a version path, when the manifest names one, must
report the commit too), every critical endpoint must answer as the manifest says, and an analysis
run (the ``verification`` policy of tasks/analysis_run.py, through the environment's metric
sources) must meet the thresholds against the previous release measured in the same intervals
(kept warm), or against the baseline measured before the cutover when it is gone. A failed
verification is a verdict: it is returned, and the deploy flow rolls back.
"""

from __future__ import annotations

import httpx
from prefect import task
from pydantic import BaseModel

from prefect_delivery.blocks import httpclient
from prefect_delivery.blocks.environment import Environment
from prefect_delivery.blocks.metrics import Samples
from prefect_delivery.blocks.metrics.probe import probe, probe_instances, smoke
from prefect_delivery.blocks.release import Instance, Release
from prefect_delivery.tasks.analysis import Verdict
from prefect_delivery.tasks.analysis_run import AnalysisRun, Policy, api_paths, run_analysis
from prefect_delivery.tasks.runtime.log import run_logger

#: Verification measures in intervals this long until it has ``requests`` requests ...
VERIFY_INTERVAL_S = 0.5
#: ... or for at most this long.
VERIFY_WINDOW_S = 60.0
#: Requests that warm a fresh instance up first (lazy imports, first connections).
WARMUP_REQUESTS = 20


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
    analysis: AnalysisRun | None = None

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


def serving_commits(env: Environment, release: Release, requests: int = 10) -> list[str]:
    """Which commits the frontend answers with, over a few requests (sorted, unique).

    The router names the slot that answered each request (``Router.identity_header``) and the
    pipeline knows which release each slot's instance runs, so this holds for any app; when the
    manifest names a ``version_path``, what the app says of itself is checked as well."""
    by_slot = {s.name: s.address for s in env.router.slots() if s.in_use}
    by_address = {i.address: i.release.commit for i in env.running()}
    path = release.run.version_path or release.run.health_path
    seen: set[str] = set()
    with httpclient.client(timeout=5) as client:
        for _ in range(requests):
            try:
                answer = client.get(env.url + path)
            except httpx.HTTPError:
                seen.add("<no answer>")
                continue
            slot = answer.headers.get(env.router.identity_header, "")
            seen.add(by_address.get(by_slot.get(slot, ""), f"<not an instance: slot {slot!r}>"))
            if release.run.version_path:
                seen.add(_commit_of(answer))
    return sorted(seen)


def instance_commits(url: str, release: Release, requests: int = 2) -> list[str]:
    """What an instance says of its commit at its version path (an instance the pipeline
    started itself is known by its address; without a version path there is nothing to ask)."""
    if not release.run.version_path:
        return [release.commit]
    seen: set[str] = set()
    with httpclient.client(timeout=5) as client:
        for _ in range(requests):
            try:
                seen.add(_commit_of(client.get(url + release.run.version_path)))
            except httpx.HTTPError:
                seen.add("<no answer>")
    return sorted(seen)


def _commit_of(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("commit"))
    except (ValueError, AttributeError):
        return "<no commit in the version answer>"


def health_status(url: str, path: str) -> int | None:
    try:
        return httpclient.get(url + path, timeout=5).status_code
    except httpx.HTTPError:
        return None


def recorded_figures(samples: Samples) -> dict:
    """What a verification measured, as the ledger keeps it with the "verified" line: the
    reference a later rollback to this release is judged against."""
    return {
        "requests": samples.requests,
        "errors": samples.errors,
        "p50_ms": samples.p50_ms,
        "p95_ms": samples.p95_ms,
        "p99_ms": samples.p99_ms,
    }


def reference_samples(env: Environment, release: Release) -> Samples | None:
    """The release's own figures from its last verification here (None: none recorded)."""
    entry = env.ledger().last("verified", release.digest)
    figures = entry.details.get("figures") if entry is not None else None
    if not figures:
        return None
    return Samples(
        source=f"{release.version} as verified at {entry.at:%Y-%m-%d %H:%M:%S} UTC",
        requests=int(figures.get("requests") or 0),
        errors=int(figures.get("errors") or 0),
        p50_ms=figures.get("p50_ms"),
        p95_ms=figures.get("p95_ms"),
        p99_ms=figures.get("p99_ms"),
    )


@task(name="baseline")
def measure_baseline(env: Environment, stable: Release) -> Samples:
    """Probe the stable release through the frontend before the new one takes traffic."""
    settings = env.verification
    samples = probe(
        env.url,
        api_paths(stable),
        requests=settings.requests,
        concurrency=settings.concurrency,
        timeout_s=settings.timeout_s,
        source=f"probe baseline {stable.version} via {env.url}",
    )
    run_logger().info(
        "Baseline on %s: %d requests, p95 %.1fms, errors %d",
        stable.label,
        samples.requests,
        samples.p95_ms or 0,
        samples.errors,
    )
    return samples


def _judge(
    env: Environment,
    release: Release,
    new: list[Instance],
    previous: list[Instance],
    baseline: Samples | None,
    label: str,
) -> AnalysisRun:
    """The verification policy of the analysis run over the new instances: first a warm-up
    (the first requests of a fresh process pay for lazy imports), then intervals until the
    configured number of requests."""
    probe_instances(
        [i.address for i in new],
        api_paths(release),
        requests=WARMUP_REQUESTS,
        concurrency=1,
        timeout_s=env.verification.timeout_s,
    )
    policy = Policy(
        kind="verification",
        window_s=VERIFY_WINDOW_S,
        interval_s=VERIFY_INTERVAL_S,
        min_requests=env.verification.requests,
        reference=None if previous else baseline,
        kill_point="verify",
        tolerate_source_errors=True,
    )
    return run_analysis(env, release, new, previous, policy, label)


def _result(env, release, url, status, commits, problems, run) -> VerificationResult:
    result = VerificationResult(
        environment=env.name,
        url=url,
        release=release,
        health_status=status,
        serving_commits=commits,
        smoke_problems=problems,
        verdict=run.verdict,
        baseline=run.stable_samples,
        samples=run.new_samples or Samples(source="none"),
        analysis=run,
    )
    logger = run_logger()
    if result.passed:
        logger.info(
            "Verification of %s in %s (%s) passed: %s",
            release.label,
            env.name,
            url,
            run.verdict.line(),
        )
    else:
        logger.warning(
            "Verification of %s in %s (%s) FAILED: %s",
            release.label,
            env.name,
            url,
            "; ".join(result.reasons()),
        )
    return result


@task(name="verify")
def verify(
    env: Environment,
    release: Release,
    baseline: Samples | None,
    new_instances: list[Instance] | None = None,
    previous_instances: list[Instance] | None = None,
) -> VerificationResult:
    """Judge the environment through its frontend and the new release's metrics.

    Latency and errors are judged against the previous release measured in the same intervals
    when its instances still run (kept warm), else against ``baseline`` (measured before the
    cutover, or a release's own recorded figures).
    """
    status = health_status(env.url, release.run.health_path)
    commits = serving_commits(env, release)
    problems = smoke(env.url, release.run.smoke, timeout_s=env.verification.timeout_s)
    new = env.running(new_instances) if new_instances is not None else []
    if not new:  # a caller that does not know the instances: every instance of the release
        new = [i for i in env.running() if i.release.digest == release.digest]
    previous = env.running(previous_instances or [])
    run = _judge(env, release, new, previous, baseline, f"verify {release.version}")
    return _result(env, release, env.url, status, commits, problems, run)


@task(name="verify-instances")
def verify_instances(
    env: Environment, release: Release, instances: list[Instance], reference: Samples | None
) -> VerificationResult:
    """Judge instances that take no traffic yet, on their own addresses: each answers its
    health path (and its version path, when given, with the release's commit), the critical
    endpoints answer as the manifest says, and the analysis run meets the thresholds against
    ``reference`` (the release's own recorded figures) or the absolute ones alone."""
    alive = env.running(instances)
    statuses = [health_status(i.url, release.run.health_path) for i in alive]
    status = (
        200
        if alive and all(s == 200 for s in statuses)
        else next((s for s in statuses if s != 200), None)
    )
    commits = sorted({c for i in alive for c in instance_commits(i.url, release)})
    problems = [p for i in alive for p in smoke(i.url, release.run.smoke)]
    run = _judge(env, release, alive, [], reference, f"verify {release.version} before traffic")
    where = ", ".join(i.url for i in alive) or "no running instance"
    return _result(env, release, where, status, commits or ["<no answer>"], problems, run)
