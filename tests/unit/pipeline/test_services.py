"""Services in a shared environment (blocks/services.py): a route only tightens the
environment's policy, one service's history is never another's, a setup saved before services
adopts its one service, and a command never guesses between two services."""

from __future__ import annotations

import json

import pytest
from support.factories import release

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.ledger import Ledger
from prefect_delivery.blocks.services import (
    PolicyConflict,
    ServiceRoute,
    adopted_route,
    legacy_service,
    pick_service,
    scope_key,
    scoped_fields,
)

BLOCK = {
    "router": {"name": "production", "frontend_port": 18082, "state_dir": "/s"},
    "strategy": {"kind": "canary", "instances": 2, "step_pause_s": 900.0},
    "promotion": {
        "upstream": "staging",
        "requires_approval": True,
        "approvers": ["alice", "bob"],
    },
    "bake_s": 3600.0,
}


def test_a_route_gives_its_own_port_and_a_router_named_after_the_service():
    fields = scoped_fields("production", BLOCK, "billing", ServiceRoute(port=18090))
    assert fields["router"]["frontend_port"] == 18090
    assert fields["router"]["service"] == "billing"
    assert fields["strategy"] == BLOCK["strategy"] and fields["promotion"] == BLOCK["promotion"]
    adopted = scoped_fields("production", BLOCK, "hello", ServiceRoute(port=18082, adopted=True))
    assert adopted["router"]["service"] is None  # keeps the environment-wide router it had


def test_settings_only_tighten_the_environment():
    route = ServiceRoute(
        port=1, instances=1, step_pause_s=10, bake_s=5, approvers=["Bob", "mallory"]
    )
    fields = scoped_fields("production", BLOCK, "billing", route)
    assert fields["strategy"]["instances"] == 2  # never fewer than the environment's
    assert fields["strategy"]["step_pause_s"] == 900.0  # never a shorter step
    assert fields["bake_s"] == 3600.0  # never a shorter bake
    assert fields["promotion"]["approvers"] == ["Bob"]  # mallory is not an approver here
    stricter = ServiceRoute(port=1, instances=4, step_pause_s=1800, bake_s=7200)
    fields = scoped_fields("production", BLOCK, "billing", stricter)
    assert fields["strategy"]["instances"] == 4 and fields["strategy"]["step_pause_s"] == 1800
    assert fields["bake_s"] == 7200
    open_env = {**BLOCK, "promotion": {"requires_approval": False, "approvers": []}}
    fields = scoped_fields(
        "staging", open_env, "billing", ServiceRoute(port=1, requires_approval=True)
    )
    assert fields["promotion"]["requires_approval"] is True
    fields = scoped_fields("staging", BLOCK, "billing", ServiceRoute(port=1, strategy="rolling"))
    assert fields["strategy"]["kind"] == "rolling"


def test_approvers_nobody_in_the_environment_may_be_are_a_conflict_not_an_opening():
    with pytest.raises(PolicyConflict, match="nobody could approve"):
        scoped_fields("production", BLOCK, "billing", ServiceRoute(port=1, approvers=["eve"]))


def test_one_services_ledger_never_holds_anothers_release(tmp_path):
    a = release(1)
    other = release(2).model_copy(update={"service": "other"})
    ledger = Ledger(str(tmp_path), "production", "svc")
    ledger.append("verified", a)
    with pytest.raises(ValueError, match="cannot be recorded"):
        ledger.append("verified", other)
    Ledger(str(tmp_path), "production", "other").append("verified", other)
    assert [r.digest for r in ledger.verified_releases()] == [a.digest]
    assert ledger.path != Ledger(str(tmp_path), "production", "other").path


def test_a_ledger_saved_before_services_is_read_per_service(tmp_path):
    """The old shared file (one per environment) holds both services' lines (a second service
    delivered into a setup from before): each reads its own, none writes there again."""
    a, b = release(1), release(2).model_copy(update={"service": "other"})
    old = tmp_path / "ledger" / "production.jsonl"
    old.parent.mkdir(parents=True)
    lines = [
        {
            "at": "2026-12-01T00:00:00Z",
            "environment": "production",
            "event": "verified",
            "release": r.model_dump(mode="json"),
            "details": {},
        }
        for r in (a, b)
    ]
    old.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"torn')
    svc = Ledger(str(tmp_path), "production", "svc")
    assert [r.digest for r in svc.verified_releases()] == [a.digest]
    svc.append("rolled-back", a)
    assert old.read_text().count("\n") == 2  # never written
    assert svc.verified_releases() == []
    assert [r.digest for r in Ledger(str(tmp_path), "production", "other").verified_releases()] == [
        b.digest
    ]
    # the service it adopts: the one the newest line names
    assert legacy_service(str(tmp_path), "production") == "other"
    assert adopted_route(str(tmp_path), "production", "other", {}, 18082).adopted
    assert adopted_route(str(tmp_path), "production", "svc", {}, 18082) is None
    taken = {"other": ServiceRoute(port=18082, adopted=True)}
    assert adopted_route(str(tmp_path), "production", "other", taken, 18082) is None


def test_a_command_never_guesses_between_two_services():
    assert pick_service("production", ["hello"], None, "delivery rollback") == "hello"
    assert pick_service("production", ["a", "b"], "b", "delivery rollback") == "b"
    with pytest.raises(ConfigError, match="carries 2 services") as info:
        pick_service("production", ["a", "b"], None, "delivery rollback")
    assert "--service" in str(info.value)
    with pytest.raises(ConfigError, match="no route"):
        pick_service("production", ["a", "b"], "c", "delivery rollback")


def test_keys_name_environment_and_service():
    assert scope_key("production", "billing") == "production.billing"
    assert scope_key("production", "billing") != scope_key("production", "hello")


def _environment(**services):
    from prefect_delivery.blocks.settings import StrategySettings
    from prefect_delivery.flows.cli.setup import environment

    env = environment("production", 18082, "/tmp/none", StrategySettings(instances=2), 60.0, True)
    env.services = {name: ServiceRoute(port=port) for name, port in services.items()}
    return env


def test_two_routes_on_one_port_are_refused():
    from prefect_delivery.blocks.environment import Environment

    env = _environment(a=18090)
    data = env.model_dump(mode="json")
    data["services"] = {"a": {"port": 18090}, "b": {"port": 18090}}
    with pytest.raises(ValueError, match="share a frontend port"):
        Environment.model_validate(data)


def test_one_services_view_holds_nothing_of_another_and_is_never_saved_as_the_environment():
    env = _environment(a=18090, b=18091)
    a, b = env.for_service("a"), env.for_service("b")
    assert (a.url, b.url) == ("http://127.0.0.1:18090", "http://127.0.0.1:18091")
    assert a.router.workdir != b.router.workdir and a.key != b.key
    assert a.ledger().path != b.ledger().path
    with pytest.raises(RuntimeError, match="one service's view"):
        a.save("production", overwrite=True)  # the environment's block stays whole
    with pytest.raises(ConfigError, match="has no route") as info:
        env.for_service("c")
    assert "delivery service add" in str(info.value)


def test_an_answer_about_another_service_approves_nothing():
    from prefect_delivery.tasks.approve import Approval, answer_problem

    env = _environment(svc=18090).for_service("svc")
    rel = release(1)
    answer = Approval(
        approved=True,
        approver="alice",
        reason="ok",
        commit=rel.commit,
        digest=rel.digest,
        service="billing",
    )
    assert "not 'svc'" in answer_problem(env, rel, answer)
    fine = answer.model_copy(update={"service": "svc"})
    assert answer_problem(env, rel, fine) is None
