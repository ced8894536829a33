"""What a run restarted from the top reuses: a passing suite per commit and digest, and the
environments this very run already finished."""

from __future__ import annotations

from support.factories import release

from prefect_delivery.tasks.approve import UpstreamEvidence
from prefect_delivery.tasks.runtime.checkpoint import finished, mark_finished
from prefect_delivery.tasks.runtime.test_record import passed_before, record_pass
from prefect_delivery.tasks.test import CaseResult, SuiteReport


def report(failed: int = 0, passed: int = 3) -> SuiteReport:
    return SuiteReport(
        shards=2,
        passed=passed,
        failed=failed,
        errors=0,
        skipped=0,
        wall_s=1.0,
        slowest=[CaseResult(nodeid="t::a", outcome="passed", seconds=0.5)],
        failures=[],
    )


def test_a_passing_suite_is_kept_for_exactly_its_commit_and_digest(tmp_path):
    rel = release(1)
    assert passed_before(str(tmp_path), rel) is None
    record_pass(str(tmp_path), rel, report(), run_id="run-1")
    kept = passed_before(str(tmp_path), rel)
    assert kept is not None and kept.report.passed == 3 and kept.run_id == "run-1"
    # another commit, or the same commit rebuilt into another digest, is tested again
    assert passed_before(str(tmp_path), release(2)) is None
    rebuilt = rel.model_copy(
        update={"artifact": rel.artifact.model_copy(update={"digest": "sha256:" + "f" * 64})}
    )
    assert passed_before(str(tmp_path), rebuilt) is None


def test_failing_or_empty_suites_are_never_kept(tmp_path):
    rel = release(3)
    record_pass(str(tmp_path), rel, report(failed=1))
    record_pass(str(tmp_path), rel, report(passed=0))
    assert passed_before(str(tmp_path), rel) is None


def test_a_torn_record_is_ignored(tmp_path):
    rel = release(4)
    record_pass(str(tmp_path), rel, report())
    path = next(tmp_path.rglob("*.json"))
    path.write_text(path.read_text()[:20])
    assert passed_before(str(tmp_path), rel) is None


def test_an_environment_is_finished_only_for_this_run_and_this_digest(tmp_path):
    rel = release(5)
    evidence = UpstreamEvidence(environment="staging", url="u", how="verified in this run")
    assert finished(str(tmp_path), "run-1", "staging", rel) is None
    mark_finished(str(tmp_path), "run-1", "staging", rel, "deployed", "blue-green", evidence)
    point = finished(str(tmp_path), "run-1", "staging", rel)
    assert point is not None and point.evidence.how == "verified in this run"
    assert finished(str(tmp_path), "run-2", "staging", rel) is None
    assert finished(str(tmp_path), "run-1", "production", rel) is None
    assert finished(str(tmp_path), "run-1", "staging", release(6)) is None
    assert finished(str(tmp_path), None, "staging", rel) is None
