"""Report models and their readable / JSON rendering."""

from __future__ import annotations

import json

from prefect_delivery.migrations_lab.compat import CompatResult
from prefect_delivery.migrations_lab.findings import Finding
from prefect_delivery.migrations_lab.report import LabReport, RevisionReport, format_report
from prefect_delivery.migrations_lab.roundtrip import RoundTrip, Step


def sample(ok: bool = False) -> LabReport:
    lint = Finding(
        check="lint",
        rule="set-not-null",
        revision="0002",
        path="versions/0002.py",
        message="revision 0002: SET NOT NULL",
        why="scans the table",
        fix="use a validated CHECK",
    )
    waived = Finding(
        check="lint",
        rule="create-index-not-concurrently",
        revision="0001",
        message="idx",
        target="ix_a",
        waived="new empty table",
    )
    rev1 = RevisionReport(
        revision="0001",
        down_revision=None,
        path="versions/0001.py",
        phase="expand",
        release="1",
        findings=[waived],
        linted=True,
        roundtrip=RoundTrip(revision="0001", steps=[Step(name="upgrade", ok=True, seconds=0.1)]),
    )
    rev2 = RevisionReport(
        revision="0002",
        down_revision="0001",
        path="versions/0002.py",
        phase="migrate",
        release="2",
        findings=[] if ok else [lint],
        linted=True,
    )
    compat = CompatResult(
        suite_release="1",
        schema_release="2",
        revision="0002",
        direction="old-code-new-schema",
        command=["pytest"],
        passed=ok,
        returncode=0 if ok else 1,
        output_tail="E   column name missing",
        seconds=0.5,
    )
    return LabReport(
        project="/p/alembic.ini",
        provider="local",
        seconds=1.5,
        revisions=[rev1, rev2],
        compat=[compat],
    )


def test_failing_report_reads_per_revision():
    text = format_report(sample())
    assert "0001  expand  release 1  versions/0001.py  ok" in text
    assert "0002  migrate  release 2  versions/0002.py  FAIL" in text
    assert "[error] lint set-not-null: revision 0002: SET NOT NULL" in text
    assert "why: scans the table" in text and "fix: use a validated CHECK" in text
    assert "[waived] create-index-not-concurrently: ix_a -- new empty table" in text
    assert "lint: clean (1 waived)" in text
    assert "FAIL release 1 suite on release 2 schema" in text
    assert "| E   column name missing" in text
    assert text.rstrip().endswith("result: FAIL (2 errors, 0 warnings)")


def test_passing_report():
    report = sample(ok=True)
    assert report.ok
    assert format_report(report).rstrip().endswith("result: PASS (0 errors, 0 warnings)")


def test_json_carries_ok_and_round_trips():
    report = sample()
    data = json.loads(report.model_dump_json())
    assert data["ok"] is False
    assert data["revisions"][1]["ok"] is False
    assert data["revisions"][0]["findings"][0]["waived"] == "new empty table"
    again = LabReport.model_validate(
        {k: v for k, v in data.items() if k != "ok"}
        | {"revisions": [{k: v for k, v in r.items() if k != "ok"} for r in data["revisions"]]}
    )
    assert again.revisions[1].findings[0].rule == "set-not-null"


def test_failed_round_trip_fails_the_revision_and_warnings_do_not():
    rev = RevisionReport(
        revision="a",
        down_revision=None,
        path="p",
        phase="expand",
        release="1",
        roundtrip=RoundTrip(revision="a", status="failed"),
    )
    assert not rev.ok
    warn = Finding(check="plan", rule="contract-declares-no-drops", severity="warning", message="m")
    report = LabReport(project="p", findings=[warn])
    assert report.ok and report.warnings == 1
    assert "lint: not run" in format_report(
        LabReport(
            project="p",
            revisions=[
                RevisionReport(revision="a", down_revision=None, path="p", phase=None, release="1")
            ],
        )
    )
