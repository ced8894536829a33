"""Attacks on the gates, decided by pure logic (or a real git repository): the policy check, the
approval's binding to its release, the test gate's coverage, the pinned commit of a run."""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
from support.factories import release

from prefect_delivery.blocks.ledger import Ledger
from prefect_delivery.blocks.settings import PromotionPolicy
from prefect_delivery.tasks.approve import approval_key, key_parts
from prefect_delivery.tasks.promotion import (
    PolicyRefused,
    answer_refusal,
    approval_stands,
    check_request,
    is_author,
)
from prefect_delivery.tasks.test import CaseResult, ShardResult, coverage_problems, record_durations


@dataclass
class Env:
    name: str
    promotion: PromotionPolicy


STAGING = Env("staging", PromotionPolicy())
PRODUCTION = Env("production", PromotionPolicy(upstream="staging", requires_approval=True))
COMMIT = "c" * 40


def never_verified(name: str) -> set[str]:
    return set()


def test_production_without_its_upstream_in_the_run_needs_the_commit_verified_there():
    with pytest.raises(PolicyRefused, match="never verified in staging"):
        check_request([PRODUCTION], COMMIT, False, never_verified)
    check_request([PRODUCTION], COMMIT, False, lambda name: {COMMIT})  # verified: allowed


def test_the_upstream_must_come_first():
    with pytest.raises(PolicyRefused, match="before staging"):
        check_request([PRODUCTION, STAGING], COMMIT, False, never_verified)
    check_request([STAGING, PRODUCTION], COMMIT, False, never_verified)


def test_auto_approval_only_where_the_policy_allows_it():
    with pytest.raises(PolicyRefused, match="allow_auto_approval: false"):
        check_request([STAGING, PRODUCTION], COMMIT, True, never_verified)
    allowing = Env(
        "production", PRODUCTION.promotion.model_copy(update={"allow_auto_approval": True})
    )
    check_request([STAGING, allowing], COMMIT, True, never_verified)


def test_an_approval_stands_once_per_digest_until_a_rollout_uses_it(tmp_path):
    ledger = Ledger(str(tmp_path), "production", "svc")
    a, b = release(1), release(2)
    assert not approval_stands(ledger, a)
    ledger.append("approved", a, "r1", approver="alice")
    assert approval_stands(ledger, a) and not approval_stands(ledger, b)
    ledger.append("deployed", a, "r1")  # a crash here: the re-run may go on
    assert approval_stands(ledger, a)
    ledger.append("verified", a, "r1")  # used up
    assert not approval_stands(ledger, a)
    ledger.append("approved", b, "r2")
    ledger.append("rejected", b, "r3")
    assert not approval_stands(ledger, b)


def test_pause_keys_bind_the_answer_to_the_digest():
    run = str(uuid4())
    a, b = release(1), release(2)
    key_a = approval_key("eu-prod-2", run, a.digest, 0)
    assert key_a != approval_key("eu-prod-2", run, b.digest, 0)
    assert key_a != approval_key("eu-prod-2", run, a.digest, 1)
    assert key_parts(key_a) == ("eu-prod-2", a.digest.split(":")[1][:12], 0)
    assert key_parts("approve-production") is None and key_parts("other") is None


def test_who_may_approve():
    policy = PromotionPolicy(requires_approval=True, approvers=["Alice", "bob"])
    rel = release(1).model_copy(update={"author": "Bob Builder <bob@example.com>"})
    assert answer_refusal(policy, "production", "alice", rel) is None
    assert "its approvers are Alice, bob" in answer_refusal(policy, "production", "eve", rel)
    assert "their own release" in answer_refusal(policy, "production", "bob", rel)
    assert is_author("BOB@example.com", rel.author) and is_author("Bob Builder", rel.author)
    assert not is_author("bobby", rel.author) and not is_author("bob", None)
    allowing = policy.model_copy(update={"allow_self_approval": True})
    assert answer_refusal(allowing, "production", "bob", rel) is None


def _shard(index, collected, selected, executed):
    return ShardResult(
        index=index,
        count=2,
        exit_code=0,
        seconds=1,
        cases=[],
        collected=collected,
        selected=selected,
        executed={n: "passed" for n in executed},
    )


def test_the_shards_must_run_exactly_what_was_collected():
    tests = ["t::a", "t::b", "t::c"]
    good = [
        _shard(0, tests, ["t::a", "t::c"], ["t::a", "t::c"]),
        _shard(1, tests, ["t::b"], ["t::b"]),
    ]
    assert coverage_problems(good) == (3, [])
    dropped = [good[0], _shard(1, tests, ["t::b"], [])]
    assert "shard 1 did not run 1 of its tests: t::b" in coverage_problems(dropped)[1][0]
    lost = [_shard(0, tests, ["t::a"], ["t::a"]), _shard(1, tests, ["t::b"], ["t::b"])]
    assert "went to no shard: t::c" in coverage_problems(lost)[1][0]
    twice = [good[0], _shard(1, tests, ["t::b", "t::c"], ["t::b", "t::c"])]
    assert "went to two shards: t::c" in coverage_problems(twice)[1][0]
    skewed = [good[0], _shard(1, tests[:2], ["t::b"], ["t::b"])]
    assert "collected different tests" in coverage_problems(skewed)[1][0]


def test_durations_are_replaced_whole_while_others_read_them(tmp_path):
    path = tmp_path / "durations.json"
    cases = [CaseResult(nodeid=f"t::{i}", outcome="passed", seconds=i / 7) for i in range(400)]
    record_durations(cases, path)
    stop, torn = threading.Event(), []

    def read():
        while not stop.is_set():
            try:
                json.loads(path.read_text())
            except ValueError as exc:
                torn.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(200):
        record_durations(cases, path)
    stop.set()
    reader.join()
    assert torn == []


def test_a_restarted_run_delivers_the_commit_it_first_resolved(tmp_path):
    from prefect_delivery.flows.delivery import _source

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)

    def commit(text: str) -> str:
        (repo / "f.txt").write_text(text)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", text], check=True)
        return subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()

    first = commit("one")
    envs = [type("E", (), {"state_dir": str(tmp_path / "state")})()]
    run = str(uuid4())
    assert _source(str(repo), "HEAD", envs, run).commit == first
    second = commit("two")  # HEAD moves while the run is suspended at its gate
    assert _source(str(repo), "HEAD", envs, run).commit == first
    assert _source(str(repo), "HEAD", envs, str(uuid4())).commit == second
    assert json.loads(
        (Path(envs[0].state_dir) / "checkpoints" / f"{run}-commit.json").read_text()
    ) == {"commit": first, "asked": "HEAD"}


def test_the_service_tests_get_nothing_of_the_worker_environment(tmp_path, monkeypatch):
    """A service's test suite is the service's code: it must not read the worker's Prefect API
    key (or anything else the worker holds) from its environment."""
    from prefect_delivery.tasks.test import run_shard

    monkeypatch.setenv("PREFECT_API_KEY", "pnu_worker_secret_123")
    monkeypatch.setenv("SOME_TOKEN", "worker-token-456")
    source = tmp_path / "src"
    (source / "tests").mkdir(parents=True)
    (source / "tests" / "test_env.py").write_text(
        "import os\n\n"
        "def test_the_worker_environment_is_not_here():\n"
        "    assert 'PREFECT_API_KEY' not in os.environ and 'SOME_TOKEN' not in os.environ\n"
        "    assert os.environ['PATH']\n"
    )
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    result = run_shard.fn(str(source), str(artifact), ["tests"], 0, 1, 120)
    assert result.exit_code == 0, result.output_tail
    assert [c.outcome for c in result.cases] == ["passed"]


def test_every_shard_of_a_run_splits_by_one_snapshot_of_the_durations(tmp_path):
    """Another delivery of the same service rewrites its durations between this run's shard
    starts (CI found it: 35 tests went to no shard, 18 to two). Each shard splits by the
    snapshot the run took once, never by the file as it is when the shard starts."""
    from prefect_delivery.tasks.test import durations_snapshot, run_shard

    source = tmp_path / "src"
    (source / "tests").mkdir(parents=True)
    (source / "tests" / "test_many.py").write_text(
        "".join(f"def test_{i}():\n    pass\n\n" for i in range(12))
    )
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    path = tmp_path / "test-durations.json"
    ids = [f"tests/test_many.py::test_{i}" for i in range(12)]
    record_durations([CaseResult(nodeid=n, outcome="passed", seconds=1.0) for n in ids], path)
    snapshot = durations_snapshot(path)

    def two_shards(first, second):
        shard0 = run_shard.fn(str(source), str(artifact), ["tests"], 0, 2, 120, first)
        record_durations(  # another delivery finishes between the shards' starts
            [
                CaseResult(nodeid=n, outcome="passed", seconds=10.0 if i < 3 else 0.1)
                for i, n in enumerate(ids)
            ],
            path,
        )
        shard1 = run_shard.fn(str(source), str(artifact), ["tests"], 1, 2, 120, second)
        return coverage_problems([shard0, shard1])

    assert two_shards(snapshot, snapshot) == (12, [])
    assert not list((tmp_path / "junit").glob("*.durations.json"))  # each shard's copy is gone
    # what reading the file at each shard's start gave: two splits, a suite half run twice
    _, problems = two_shards(snapshot, durations_snapshot(path))
    assert any("shards:" in p or "no shard" in p for p in problems), problems
