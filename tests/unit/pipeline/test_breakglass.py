"""Break glass decides from the router's live state and the ledger alone (pure)."""

from __future__ import annotations

import pytest
from support.factories import instance, live, release, server

from prefect_delivery.blocks.errors import ConfigError
from prefect_delivery.blocks.ledger import Ledger
from prefect_delivery.tasks.breakglass import contract_since, names, rollback_plan

A, B, C = release(1), release(2), release(3)


def test_back_to_the_release_verified_before_the_one_serving():
    state = live(
        [instance(A, 1001), instance(B, 1002, "green")],
        [server("s0", 1001, 0), server("s1", 1002, 200)],
    )
    target, left = rollback_plan(state, [B, A], None, "env")
    assert target == A and left == [B]


def test_a_rollout_in_flight_goes_back_to_the_stable_release_not_further():
    """A canary (never verified) takes 10 %: the rollback ends the canary, it does not walk
    production back past the release that is stable."""
    state = live(
        [instance(A, 1001), instance(B, 1002, "canary")],
        [server("s0", 1001, 180), server("s1", 1002, 20)],
    )
    target, left = rollback_plan(state, [A], None, "env")
    assert target == A and left == [B]


def test_nothing_to_return_to_is_said():
    state = live([instance(A, 1001)], [server("s0", 1001, 200)])
    with pytest.raises(ConfigError, match="no previous verified release"):
        rollback_plan(state, [A], None, "env")
    with pytest.raises(ConfigError, match="is not a release verified"):
        rollback_plan(state, [A], "deadbeef", "env")


def test_to_names_a_verified_release_by_commit_or_digest():
    state = live(
        [instance(A, 1001), instance(C, 1003)], [server("s0", 1001, 0), server("s1", 1003, 200)]
    )
    assert rollback_plan(state, [C, B, A], A.commit[:8], "env")[0] == A
    assert rollback_plan(state, [C, B, A], B.digest, "env")[0] == B
    assert names(A.digest.split(":")[1][:12], A.digest) and not names("", A.digest)


def test_a_contract_since_the_target_was_verified_needs_the_full_gate(tmp_path):
    ledger = Ledger(str(tmp_path), "env", "svc")
    ledger.append("migrated", A, "r", status="applied", phase="expand (0002)")
    ledger.append("verified", A, "r")
    assert contract_since(ledger, A) is None
    ledger.append("migrated", B, "r", status="refused", phase="contract (0004: drops x)")
    assert contract_since(ledger, A) is None  # refused: nothing was dropped
    ledger.append("migrated", B, "r", status="applied", phase="contract (0004: drops x)")
    assert contract_since(ledger, A) == "contract (0004: drops x)"
