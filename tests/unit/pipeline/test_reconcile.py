"""Reconciliation decides from the live state alone (router weights + target instances)."""

from support.factories import instance, live, release, server

from prefect_delivery.tasks.reconcile import decide_reconcile

A, B = release(1), release(2)


def test_empty_environment_has_no_stable():
    plan = decide_reconcile(live([], []), B.digest, [])
    assert plan.stable_digest is None and plan.stop == [] and plan.weights == {}


def test_stable_is_the_release_with_traffic():
    state = live([instance(A, 1001)], [server("s0", 1001, 200)])
    plan = decide_reconcile(state, B.digest, [A.digest])
    assert plan.stable_digest == A.digest
    assert not plan.already_live and plan.weights == {} and plan.stop == []


def test_already_live_and_verified_is_a_no_op():
    state = live([instance(B, 1002)], [server("s0", 1002, 200)])
    plan = decide_reconcile(state, B.digest, [B.digest, A.digest])
    assert plan.already_live


def test_live_but_not_verified_is_not_done():
    state = live(
        [instance(A, 1001), instance(B, 1002, "green")],
        [server("s0", 1001, 0), server("s1", 1002, 200)],
    )
    plan = decide_reconcile(state, B.digest, [A.digest])
    assert not plan.already_live
    assert plan.stable_digest == A.digest
    # traffic goes back to A, B's half-deployed instance is retired
    assert plan.weights == {"127.0.0.1:1001": 200, "127.0.0.1:1002": 0}
    assert plan.stop == ["env-1002"]


def test_interrupted_canary_is_taken_back():
    state = live(
        [instance(A, 1001), instance(B, 1002, "canary")],
        [server("s0", 1001, 190), server("s1", 1002, 10)],
    )
    plan = decide_reconcile(state, B.digest, [A.digest])
    assert plan.stable_digest == A.digest
    assert plan.weights == {"127.0.0.1:1001": 200, "127.0.0.1:1002": 0}
    assert "env-1002" in plan.stop
    assert any("interrupted" in note for note in plan.notes)


def test_dead_instances_are_forgotten():
    state = live(
        [instance(A, 1001), instance(A, 1003, alive=False)],
        [server("s0", 1001, 200), server("s1", 1003, 0, "DOWN")],
    )
    plan = decide_reconcile(state, B.digest, [A.digest])
    assert plan.stop == ["env-1003"]


def test_old_warm_release_is_retired_by_a_deploy_but_kept_for_rollback():
    C = release(3)
    state = live(
        [instance(A, 1001), instance(C, 1003, "green")],
        [server("s0", 1001, 0), server("s1", 1003, 200)],
    )
    deploy_plan = decide_reconcile(state, B.digest, [C.digest, A.digest])
    assert deploy_plan.stable_digest == C.digest and deploy_plan.stop == ["env-1001"]
    rollback_plan = decide_reconcile(state, B.digest, [C.digest, A.digest], keep_warm=True)
    assert rollback_plan.stop == []


def test_nothing_routed_restores_newest_verified_running_release():
    state = live([instance(A, 1001)], [server("s0", 1001, 0)])
    plan = decide_reconcile(state, B.digest, [A.digest])
    assert plan.stable_digest == A.digest
    assert plan.weights == {"127.0.0.1:1001": 200}


def test_an_unverified_release_holding_all_traffic_is_in_flight_not_stable():
    """Killed after the shift to 100 % and before verification, then another commit: the
    verified warm release is stable, the unverified one loses its traffic and is retired."""
    C = release(3)
    state = live(
        [instance(A, 1001), instance(B, 1002, "green")],
        [server("s0", 1001, 0), server("s1", 1002, 200)],
    )
    plan = decide_reconcile(state, C.digest, [A.digest])
    assert plan.stable_digest == A.digest
    assert plan.weights == {"127.0.0.1:1001": 200, "127.0.0.1:1002": 0}
    assert plan.stop == ["env-1002"]
    assert any("in flight" in note for note in plan.notes)


def test_the_newest_verified_release_is_stable_even_with_less_traffic():
    C = release(3)
    state = live(
        [instance(A, 1001), instance(B, 1002, "green")],
        [server("s0", 1001, 150), server("s1", 1002, 50)],
    )
    plan = decide_reconcile(state, C.digest, [B.digest, A.digest])
    assert plan.stable_digest == B.digest
    assert plan.weights == {"127.0.0.1:1001": 0, "127.0.0.1:1002": 200}


def test_with_no_verified_release_running_the_only_traffic_is_not_cut():
    C = release(3)
    state = live([instance(B, 1002)], [server("s0", 1002, 200)])
    plan = decide_reconcile(state, C.digest, [A.digest])
    assert plan.stable_digest is None and plan.weights == {} and plan.stop == []
