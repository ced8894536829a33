"""The delivery flow end to end on the embedded default: real HAProxy, processes, Prefect.

Two releases blue-green without a failed request, built once, and a verdict that stops a
release in staging and spares production: tests/integration/pipeline/test_two_services.py
(with a second service beside it)."""

from __future__ import annotations

import httpx
from support import SteadyLoad
from support.pipeline import commit_release, deliver, served_version


def stage_results(summary) -> dict[str, str]:
    return {s.stage: s.result for s in summary.stages}


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
