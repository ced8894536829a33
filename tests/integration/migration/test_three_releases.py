"""The people.name split travels through staging and production: expand, migrate, contract,
each phase applied to the environment's database before the code that needs it, with zero
failed requests on both frontends while it happens."""

from __future__ import annotations

import pytest
from support import SteadyLoad
from support.migration import VERSIONS, columns, ledger_events, people, revision
from support.pipeline import deliver

pytestmark = pytest.mark.postgres

#: after schema release n: alembic_version, the columns of people, the code mode served
EXPECTED = {
    1: ("0001", ["id", "name"], "name"),
    2: ("0002", ["id", "name", "first_name", "last_name"], "name"),
    3: ("0003", ["id", "name", "first_name", "last_name"], "split"),
    4: ("0004", ["id", "first_name", "last_name"], "split"),
}
PEOPLE = [
    {"id": 1, "first_name": "Ada", "last_name": "Lovelace"},
    {"id": 2, "first_name": "Grace", "last_name": "Hopper"},
    {"id": 3, "first_name": "Alan", "last_name": "Turing"},
    {"id": 4, "first_name": "Edsger", "last_name": "Wybe Dijkstra"},
    {"id": 5, "first_name": "Hypatia", "last_name": None},
]


def test_the_split_is_delivered_phase_by_phase_through_staging_and_production(
    make_db_env, schema_repo, store, cluster
):
    from prefect_delivery.blocks.artifacts import ArtifactStore
    from prefect_delivery.tasks.build import build, checkout
    from prefect_delivery.tasks.migrate import migration_phase
    from prefect_delivery.tasks.source import resolve_source

    repo, commits = schema_repo
    staging = make_db_env("mstg")
    production = make_db_env("mprd", bake_s=1.0)
    envs = [staging, production]

    summary, error = deliver(repo, commits[1], envs, store)
    assert error is None, summary.text()
    for env in envs:
        assert revision(cluster, env) == "0001"
        assert people(env)["people"] == PEOPLE

    for n in (2, 3, 4):
        if n == 4:  # what the approver of production would read: the phase it carries
            co = checkout.fn(resolve_source(repo.path, commits[4]))
            release4 = build.fn(co, ArtifactStore.load(store))
            assert migration_phase(production, release4) == "contract (0004: drops people.name)"
        with (
            SteadyLoad(staging.url, "/api/people") as on_staging,
            SteadyLoad(production.url, "/api/people") as on_production,
        ):
            summary, error = deliver(repo, commits[n], envs, store)
        assert error is None, summary.text()
        expected_revision, expected_columns, mode = EXPECTED[n]
        stages = {s.stage: s for s in summary.stages}
        for env, load in ((staging, on_staging), (production, on_production)):
            # the schema reached the release's revision, the code serving reads it
            assert revision(cluster, env) == expected_revision
            assert columns(cluster, env) == expected_columns
            body = people(env)
            assert (body["schema"], body["version"]) == (mode, VERSIONS[n])
            assert body["people"] == PEOPLE
            # each phase applied before the code: the ledger has migrated, then deployed
            events = ledger_events(env, summary.release.digest)
            assert events.index("migrated") < events.index("deployed"), events
            assert stages[f"migrate {env.name}"].result == "passed"
            migrated = env.ledger().last("migrated", summary.release.digest).details
            assert migrated["status"] == "applied"
            assert [r["revision"] for r in migrated["revisions"]] == [expected_revision]
            # zero failed requests on the frontend while schema and code changed
            assert load.result.failed == 0, (env.name, load.result.statuses)
            assert load.result.requests > 50
            assert VERSIONS[n] in load.result.versions  # the new code answered during the run
        # staging's rehearsal is reused for production (same artifact, same start revision)
        assert "rehearsal reused" in stages[f"migrate {production.name}"].detail
