"""Two services through one staging and one production, with the whole delivery flow.

hello-service and ``greeter`` (a second service: another name, its own releases) share both
environments. Each keeps serving its own answers on its own frontend, without a failed request,
while the other is delivered, fails a verification, is rolled back by a person and by a
monitor's alert; a crash of one service's delivery leaves the other's next delivery judged
against its own stable release; neither service's releases ever appear in the other's ledger,
report or plan.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from support import VENV_BIN, SteadyLoad, short_tmpdir
from support.pipeline import (
    commit_release,
    deliver,
    register,
    rename_service,
    served_version,
    session_repo,
)


@pytest.fixture
def greeter_repo():
    root = short_tmpdir("pd-greeter-")
    repo = session_repo(root)
    rename_service(repo, "greeter")
    yield repo
    shutil.rmtree(root, ignore_errors=True)


def cli(*args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    variables = dict(os.environ)
    if kill_at:
        variables["DELIVERY_KILL_AT"] = kill_at
    return subprocess.run(
        [str(VENV_BIN / "delivery"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=variables,
    )


class Served:
    """One service in one environment, held to what it served."""

    def __init__(self, env):
        self.env = env
        self.mark()

    def mark(self) -> None:
        self.commit = served_version(self.env)["commit"]
        self.ids = {i.id for i in self.env.running()}
        self.digest = self.env.observe().serving().digest

    def unchanged(self) -> None:
        assert served_version(self.env)["commit"] == self.commit
        assert {i.id for i in self.env.running()} == self.ids
        assert self.env.observe().shares() == {self.digest: 100.0}


def only(env, service: str) -> None:
    """The service's ledger here holds its own releases only."""
    assert {e.release.service for e in env.ledger().entries()} == {service}


def stage_results(summary) -> dict[str, str]:
    return {s.stage: s.result for s in summary.stages}


def test_two_services_share_staging_and_production_and_stay_apart(
    make_env, hello_repo, greeter_repo, artifact_store
):
    """Also the pipeline's own promises on the way: a release built once and served from the
    digest staging verified, blue-green without a failed request, a verdict with its numbers
    that stops a release in staging and spares production, `delivery status` reading the
    router's weights."""
    from prefect_delivery.flows.rollback import rollback
    from prefect_delivery.tasks.status import status_report

    staging = make_env("tws")
    production = make_env(
        "twp",
        upstream=staging.name,
        requires_approval=True,
        allow_auto_approval=True,
        keep_previous_s=3600,
        bake_s=1.0,
    )
    greeter = {e.name: register(e, "greeter") for e in (staging, production)}
    hello = {e.name: e for e in (staging, production)}
    envs = [staging, production]
    where = ("--state-dir", production.state_dir)  # the snapshots the fast commands read

    h1 = commit_release(hello_repo, "1.0.0")
    g1 = commit_release(greeter_repo, "5.0.0")
    assert deliver(hello_repo, h1, envs, artifact_store)[1] is None
    assert deliver(greeter_repo, g1, envs, artifact_store)[1] is None
    for env in envs:  # each frontend serves its own service's release
        assert served_version(hello[env.name]) == {"version": "1.0.0", "commit": h1}
        assert served_version(greeter[env.name]) == {"version": "5.0.0", "commit": g1}
    assert hello[production.name].url != greeter[production.name].url

    loads = {
        (env.name, service): SteadyLoad(scoped.url)
        for env in envs
        for service, scoped in (("hello", hello[env.name]), ("greeter", greeter[env.name]))
    }
    for load in loads.values():
        load.__enter__()
    try:
        # hello-service's second release: blue-green under load, built once
        greeter_live = Served(greeter[production.name])
        h2 = commit_release(hello_repo, "2.0.0")
        summary, error = deliver(hello_repo, h2, envs, artifact_store)
        assert error is None, summary.text()
        assert list(stage_results(summary)) == [
            "build",
            "test",
            staging.name,
            f"approval {production.name}",
            production.name,
            f"monitor {production.name}",
        ]
        verified_in_staging = [r.digest for r in hello[staging.name].ledger().verified_releases()]
        rows = {
            (r["environment"], r["service"]): r
            for r in status_report([staging.name, production.name], [production.state_dir])
        }
        live_prd = rows[(production.name, "hello-service")]["live"]
        live_stg = rows[(staging.name, "hello-service")]["live"]
        assert live_prd["digest"] == live_stg["digest"] == summary.release.digest
        assert live_prd["digest"] == verified_in_staging[0] and live_prd["commit"] == h2
        for env in envs:  # `delivery status` says what each service's router routes
            for service, scoped in (
                ("hello-service", hello[env.name]),
                ("greeter", greeter[env.name]),
            ):
                listed = {
                    i["url"].removeprefix("http://"): i["weight"]
                    for i in rows[(env.name, service)]["instances"]
                }
                assert listed == scoped.router.weights()
        greeter_live.unchanged()  # greeter's release, instances and traffic: not touched

        # greeter's second release: hello-service's not touched, greeter judged by its own
        hello_live = Served(hello[production.name])
        g2 = commit_release(greeter_repo, "5.1.0")
        summary, error = deliver(greeter_repo, g2, envs, artifact_store)
        assert error is None, summary.text()
        hello_live.unchanged()
        verified = greeter[production.name].ledger().last("verified")
        g1_digest = next(
            r.digest
            for r in greeter[production.name].ledger().verified_releases()
            if r.commit == g1
        )
        assert verified.release.commit == g2 and verified.details["previous"] == g1_digest

        # a slow hello-service release: a verdict with its numbers stops it in staging;
        # production (of both services) never moves
        greeter_live.mark()
        slow = commit_release(hello_repo, "2.1.0", fault="slow:0.3")
        summary, error = deliver(hello_repo, slow, envs, artifact_store)
        assert error is not None
        results = stage_results(summary)
        assert results[staging.name] == "failed" and production.name not in results
        assert re.search(r"p(50|95) \+\d+ % vs stable", summary.reason), summary.reason
        assert served_version(hello[staging.name])["commit"] == h2
        assert {i.release.commit for i in hello[staging.name].running()} == {h2}
        assert hello[staging.name].ledger().entries()[-1].event == "failed"
        hello_live.unchanged()
        greeter_live.unchanged()

        # a person rolls greeter back in production: a traffic switch to its warm g1
        run = cli("rollback", production.name, "--service", "greeter", "--reason", "drill", *where)
        assert run.returncode == 0, run.stderr[-2000:]
        assert "all traffic on greeter 5.0.0" in run.stdout, run.stdout
        assert served_version(greeter[production.name])["commit"] == g1
        hello_live.unchanged()

        # without --service, in an environment of two services, nothing is guessed
        run = cli("rollback", production.name, "--reason", "which one?", *where)
        assert run.returncode == 2 and "carries 2 services" in run.stderr, run.stderr
        hello_live.unchanged()

        # a monitor's alert that names greeter's digest for hello-service acts on nothing
        outcome = rollback(
            production.name,
            service="hello-service",
            digest=g1_digest,
            source="monitor",
            reason="alert about another service's release",
        )
        assert outcome.status == "not-serving"
        hello_live.unchanged()
        # a monitor's alert about hello-service's release rolls hello-service back only
        outcome = rollback(
            production.name,
            service="hello-service",
            digest=hello_live.digest,
            source="monitor",
            reason="monitor: 5xx",
        )
        assert outcome.status == "rolled-back" and outcome.to_release.commit == h1
        assert served_version(greeter[production.name])["commit"] == g1
    finally:
        for load in loads.values():
            load.__exit__(None, None, None)
    for (name, service), load in loads.items():
        assert load.result.failed == 0, (name, service, load.result.statuses)
        assert load.result.requests > 50
    assert set(loads[(production.name, "hello")].result.versions) == {"1.0.0", "2.0.0"}
    assert set(loads[(production.name, "greeter")].result.versions) == {"5.0.0", "5.1.0"}

    # history, figures and plans: each service's own
    for env in envs:
        only(hello[env.name], "hello-service")
        only(greeter[env.name], "greeter")
    run = cli("report", "--env", production.name, "--json", *where)
    assert run.returncode == 0, run.stderr
    figures = {f["service"]: f for f in json.loads(run.stdout)}
    assert set(figures) == {"hello-service", "greeter"}
    assert figures["hello-service"]["verified"] >= 2 and figures["greeter"]["verified"] >= 2
    assert {d["service"] for d in figures["greeter"]["details"]} == {"greeter"}
    run = cli(
        "plan", hello_repo.path, "--env", staging.name, "--env", production.name, "--json", *where
    )
    assert run.returncode == 0, run.stderr
    plan = json.loads(run.stdout)
    assert plan["service"] == "hello-service"
    assert all("greeter" not in (e["serving"] or "") for e in plan["environments"])
    run = cli("status", "--env", production.name, "--json", *where)
    rows = {r["service"]: r for r in json.loads(run.stdout)}
    assert rows["greeter"]["live"]["commit"] == g1 and rows["hello-service"]["live"]["commit"] == h1
    assert all(i["version"].startswith("5.") for i in rows["greeter"]["instances"])


def test_a_crashed_delivery_of_one_service_is_not_the_others_baseline(
    make_env, hello_repo, greeter_repo, artifact_store
):
    """hello-service's delivery is killed right after its cutover (its new release holds all
    of its traffic, unverified); greeter is delivered next: it is judged against its own
    stable release and changes nothing of hello-service's; then hello-service's rollback
    returns it to its verified release."""
    env = make_env("twc", keep_previous_s=3600)
    greeter = register(env, "greeter")
    h1 = commit_release(hello_repo, "1.0.0")
    g1 = commit_release(greeter_repo, "5.0.0")
    assert deliver(hello_repo, h1, [env], artifact_store)[1] is None
    assert deliver(greeter_repo, g1, [env], artifact_store)[1] is None

    h2 = commit_release(hello_repo, "2.0.0")
    killed = cli(
        "run",
        hello_repo.path,
        "--commit",
        h2,
        "--auto-approve",
        "--artifact-store",
        artifact_store,
        "--env",
        env.name,
        kill_at=f"shifted-{env.name}-100",
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert served_version(env)["commit"] == h2  # in flight: all of hello's traffic, unverified
    in_flight = Served(env)

    g2 = commit_release(greeter_repo, "5.1.0")
    summary, error = deliver(greeter_repo, g2, [env], artifact_store)
    assert error is None, summary.text()
    verified = greeter.ledger().last("verified")
    g1_digest = next(r.digest for r in greeter.ledger().verified_releases() if r.commit == g1)
    assert verified.release.commit == g2 and verified.details["previous"] == g1_digest
    in_flight.unchanged()  # greeter's reconciliation did not touch hello-service's rollout
    only(greeter, "greeter")
    only(env, "hello-service")

    run = cli(
        "rollback",
        env.name,
        "--service",
        "hello-service",
        "--reason",
        "after the crash",
        "--state-dir",
        env.state_dir,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert served_version(env)["commit"] == h1
    assert served_version(greeter)["commit"] == g2
