"""Schema-aware gates: no contract while a release that uses what it drops serves or is kept
warm; no rollback, once the contract is applied, to a release that needs what it dropped."""

from __future__ import annotations

import pytest
from support import SteadyLoad
from support.migration import columns, people, revision
from support.pipeline import deliver, served_version

pytestmark = pytest.mark.postgres


def live_versions(env) -> dict[str, int]:
    """version -> weight of every alive instance."""
    return {
        li.instance.release.version: li.weight
        for li in env.observe().instances
        if li.instance.alive
    }


def test_contract_gate_and_rollback_gate(make_db_env, schema_repo, store, cluster):
    from prefect_delivery.blocks.errors import GateFailed
    from prefect_delivery.flows.cli import main as cli
    from prefect_delivery.flows.rollback import rollback

    repo, commits = schema_repo
    env = make_db_env("mgate", keep_previous_s=3600)  # the previous release is kept warm

    # release 2 serves (expand applied); release 4 would apply migrate + contract at once
    summary, error = deliver(repo, commits[2], [env], store)
    assert error is None, summary.text()
    summary, error = deliver(repo, commits[4], [env], store)
    assert isinstance(error.__cause__, GateFailed) and error.__cause__.gate == "schema gate"
    message = str(error)
    assert f"{env.name} serves hello-service 1.1.0" in message
    assert "uses people.name (dropped by contract 0004)" in message
    assert "its migrations end at 0002, before migrate 0003 moved the code off people.name" in (
        message
    )
    assert "Nothing was applied" in message
    assert revision(cluster, env) == "0002"  # not even the migrate of the same release
    assert served_version(env)["version"] == "1.1.0"
    assert env.ledger().last("migrated").details["status"] == "refused"

    # release 3 (the migrate) over it: release 2 stays warm for a rollback
    summary, error = deliver(repo, commits[3], [env], store)
    assert error is None, summary.text()
    assert live_versions(env) == {"1.1.0": 0, "1.2.0": 200}
    summary, error = deliver(repo, commits[4], [env], store)
    assert error is not None and error.__cause__.gate == "schema gate"
    assert f"{env.name} keeps warm for rollback hello-service 1.1.0" in str(error)
    assert f"delivery retire {env.name}" in str(error)
    assert revision(cluster, env) == "0003"
    assert served_version(env)["version"] == "1.2.0"
    assert "1.1.0" in live_versions(env)  # nothing live changed

    # retire the warm release 2, and the contract goes through
    assert cli(["retire", env.name, commits[2][:12]]) == 0
    assert "1.1.0" not in live_versions(env)
    summary, error = deliver(repo, commits[4], [env], store)
    assert error is None, summary.text()
    assert revision(cluster, env) == "0004" and "name" not in columns(cluster, env)
    assert live_versions(env) == {"1.3.0": 200, "1.2.0": 0}

    # rollback gate: release 2 reads people.name, which contract 0004 dropped
    before = {i.id for i in env.target.list(env.name)}
    with pytest.raises(GateFailed) as refused:
        rollback(env.name, to=commits[2][:12], reason="test")
    text = str(refused.value)
    assert f"refusing to roll back {env.name} to hello-service 1.1.0" in text
    assert "contract 0004 (applied: the database is at 0004) dropped people.name" in text
    assert f"the furthest back {env.name} may roll back is hello-service 1.2.0" in text
    assert f"--to {commits[3][:12]}" in text
    assert served_version(env)["version"] == "1.3.0"
    assert {i.id for i in env.target.list(env.name)} == before  # nothing changed

    # release 3 (the migrate) works without people.name: rolling back to it is allowed
    with SteadyLoad(env.url, "/api/people") as load:
        outcome = rollback(env.name, reason="test")
    assert outcome.to_release.version == "1.2.0" and not outcome.restarted
    assert load.result.failed == 0, load.result.statuses
    body = people(env)
    assert (body["version"], body["schema"], len(body["people"])) == ("1.2.0", "split", 5)
