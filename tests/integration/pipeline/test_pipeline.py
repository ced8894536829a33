"""The delivery flow end to end on the embedded default: real HAProxy, processes, Prefect."""

from __future__ import annotations

import re

import httpx
from support import SteadyLoad
from support.pipeline import commit_release, deliver, served_version


def stage_results(summary) -> dict[str, str]:
    return {s.stage: s.result for s in summary.stages}


def test_two_releases_build_once_blue_green_without_a_failed_request(
    hello_repo, make_env, artifact_store
):
    from prefect_delivery.tasks.status import status_report

    staging, production = make_env("stg"), make_env("prd", bake_s=1.0)
    first = commit_release(hello_repo, "1.0.0")
    summary, error = deliver(hello_repo, first, [staging, production], artifact_store)
    assert error is None, summary.text()
    assert served_version(production)["commit"] == first

    second = commit_release(hello_repo, "2.0.0")
    with SteadyLoad(staging.url) as load_stg, SteadyLoad(production.url) as load_prd:
        summary, error = deliver(hello_repo, second, [staging, production], artifact_store)
    assert error is None, summary.text()
    assert summary.outcome == "delivered"
    assert list(stage_results(summary)) == [
        "build",
        "test",
        staging.name,
        production.name,
        f"monitor {production.name}",
    ]

    # blue-green: the old release served until the new one took over; nothing failed
    for load in (load_stg, load_prd):
        assert load.result.failed == 0, load.result.statuses
        assert load.result.requests > 50
        assert set(load.result.versions) <= {"1.0.0", "2.0.0"}
        assert load.result.versions["1.0.0"] > 0 and load.result.versions["2.0.0"] > 0

    # build once: production serves exactly the digest staging verified
    verified_in_staging = [r.digest for r in staging.ledger().verified_releases()]
    report = {r["environment"]: r for r in status_report([staging.name, production.name])}
    live_prd, live_stg = report[production.name]["live"], report[staging.name]["live"]
    assert live_prd["digest"] == live_stg["digest"] == summary.release.digest
    assert live_prd["digest"] == verified_in_staging[0]
    assert live_prd["commit"] == second == served_version(production)["commit"]

    # `delivery status` says what HAProxy routes: weights per instance match the router's
    for env in (staging, production):
        routed = env.router.weights()
        listed = {
            i["url"].removeprefix("http://"): i["weight"] for i in report[env.name]["instances"]
        }
        assert listed == routed
        # release 1 was retired after the cutover (keep_previous_s=0): one instance left
        assert len(routed) == 1 and list(routed.values()) == [200]


def test_failing_tests_deploy_nothing(hello_repo, make_env, artifact_store):
    staging, production = make_env("stg"), make_env("prd")
    bad = commit_release(
        hello_repo,
        "1.0.1",
        extra={"tests/test_broken.py": "def test_broken():\n    assert 1 + 1 == 3\n"},
    )
    summary, error = deliver(hello_repo, bad, [staging, production], artifact_store)
    assert error is not None
    assert stage_results(summary) == {"build": "passed", "test": "failed"}
    assert "test_broken" in summary.reason
    for env in (staging, production):
        assert env.target.list(env.name) == []
        assert env.ledger().entries() == []


def test_failed_staging_verification_returns_staging_and_spares_production(
    hello_repo, make_env, artifact_store
):
    staging, production = make_env("stg"), make_env("prd")
    good = commit_release(hello_repo, "1.0.0")
    _, error = deliver(hello_repo, good, [staging, production], artifact_store)
    assert error is None
    before = {i.id for i in production.target.list(production.name)}

    slow = commit_release(hello_repo, "1.1.0", fault="slow:0.3")
    with SteadyLoad(production.url) as load_prd:
        summary, error = deliver(hello_repo, slow, [staging, production], artifact_store)
    assert error is not None
    results = stage_results(summary)
    assert results[staging.name] == "failed" and production.name not in results
    # a latency verdict with its numbers (p50 or p95, whichever quantile rejected first)
    assert re.search(r"p(50|95) \+\d+ % vs stable", summary.reason), summary.reason
    # staging is back on the previous release, the bad instances are gone
    assert served_version(staging)["commit"] == good
    assert {i.release.commit for i in staging.target.list(staging.name)} == {good}
    # production never moved
    assert {i.id for i in production.target.list(production.name)} == before
    assert load_prd.result.failed == 0 and set(load_prd.result.versions) == {"1.0.0"}
    events = [e.event for e in staging.ledger().entries()]
    assert events[-1] == "failed"


def test_unhealthy_release_never_takes_traffic(hello_repo, make_env, artifact_store):
    staging = make_env("stg")
    good = commit_release(hello_repo, "1.0.0")
    assert deliver(hello_repo, good, [staging], artifact_store)[1] is None

    sick = commit_release(hello_repo, "1.2.0", fault="unhealthy", startup_timeout_s=4)
    with SteadyLoad(staging.url) as load:
        summary, error = deliver(hello_repo, sick, [staging], artifact_store)
    assert error is not None and "health" in summary.reason
    assert load.result.failed == 0 and set(load.result.versions) == {"1.0.0"}
    assert served_version(staging)["commit"] == good
    assert httpx.get(staging.url + "/healthz").status_code == 200
