from pathlib import Path

import pytest

from prefect_delivery.blocks.errors import GateFailed
from prefect_delivery.tasks.test import CaseResult, ShardResult, gate, merge, parse_junit

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="4">
<testcase classname="tests.test_a" name="test_ok" time="0.25"/>
<testcase classname="tests.test_a" name="test_fast" time="0.01"/>
<testcase classname="tests.test_b" name="test_bad[x]" time="0.10">
  <failure message="assert 1 == 2">trace</failure></testcase>
<testcase classname="tests.test_b" name="test_skip" time="0.00">
  <skipped message="not here"/></testcase>
</testsuite></testsuites>"""


def test_parse_junit(tmp_path: Path):
    path = tmp_path / "j.xml"
    path.write_text(JUNIT)
    cases = parse_junit(path)
    assert [c.outcome for c in cases] == ["passed", "passed", "failed", "skipped"]
    assert cases[2].nodeid == "tests/test_b.py::test_bad[x]"
    assert cases[2].message == "assert 1 == 2"


def shard(index, cases):
    return ShardResult(index=index, count=2, exit_code=0, seconds=1.0, cases=cases)


def test_merge_counts_and_slowest():
    a = [
        CaseResult(nodeid="a", outcome="passed", seconds=0.3),
        CaseResult(nodeid="b", outcome="failed", seconds=0.1),
    ]
    b = [
        CaseResult(nodeid="c", outcome="passed", seconds=0.5),
        CaseResult(nodeid="d", outcome="skipped", seconds=0.0),
    ]
    report = merge([shard(0, a), shard(1, b)], wall_s=1.2, slowest=2)
    assert (report.passed, report.failed, report.skipped, report.shards) == (2, 1, 1, 2)
    assert [c.nodeid for c in report.slowest] == ["c", "a"]
    assert [c.nodeid for c in report.failures] == ["b"]
    with pytest.raises(GateFailed, match="1 test.*failed: b"):
        gate(report)


def test_gate_refuses_an_empty_suite():
    with pytest.raises(GateFailed, match="no tests"):
        gate(merge([shard(0, [])], 0.1))


def test_gate_passes_a_green_suite():
    gate(merge([shard(0, [CaseResult(nodeid="a", outcome="passed", seconds=0.1)])], 0.1))
