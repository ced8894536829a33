"""check() end to end on the fixture projects, on the session's ephemeral cluster."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_delivery.migrations_lab import CompatConfig, check, format_report

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[3]


def failing(report, revision=None):
    return [(f.revision, f.rule) for f in report.all_findings()
            if f.failing and (revision is None or f.revision == revision)]


def test_good_expand_migrate_contract_project_passes(pg_cluster, fixtures):
    report = check(fixtures / "good", cluster=pg_cluster)
    assert report.ok, format_report(report)
    assert [(r.revision, r.phase, r.release) for r in report.revisions] == [
        ("0001", "expand", "1"), ("0002", "expand", "1"), ("0003", "migrate", "2"),
        ("0004", "contract", "3")]
    for rev in report.revisions:
        assert rev.roundtrip is not None and rev.roundtrip.status == "passed"
        assert [s.name for s in rev.roundtrip.steps] == [
            "seed", "upgrade", "downgrade", "upgrade again"]
    # the migrate's downgrade keeps backfilled values: reported as a note, not hidden
    assert any("full_name" in n and "backfilled" in n
               for n in report.revisions[2].roundtrip.notes)


def test_dangerous_revision_is_caught_by_lint(pg_cluster, fixtures):
    report = check(fixtures / "dangerous", cluster=pg_cluster)
    assert not report.ok
    lint = {f.rule for f in report.revisions[1].findings if f.check == "lint" and f.failing}
    assert {"create-index-not-concurrently", "add-column-not-null-without-default",
            "alter-column-type", "rename-column", "missing-lock-timeout",
            "waiver-without-reason"} <= lint
    assert report.revisions[0].ok  # its index on a new table carries a reasoned waiver
    # the NOT NULL column without default also fails for real on the seeded table
    [up] = [f for f in report.revisions[1].findings if f.rule == "upgrade-failed"]
    assert "23502" in up.message and "at revision 0001 (verified)" in up.message


def test_lossy_downgrade_is_reported(pg_cluster, fixtures):
    report = check(fixtures / "lossy", cluster=pg_cluster)
    assert failing(report) == [("0004", "lossy-downgrade")]
    [f] = [f for f in report.revisions[3].findings if f.rule == "lossy-downgrade"]
    assert f.table == "users"
    assert "users.name" in f.message and "now NULL" in f.message
    assert "users.name from users.full_name" in (f.fix or "")


def test_broken_downgrade_is_reported(pg_cluster, fixtures):
    report = check(fixtures / "broken_downgrade", cluster=pg_cluster)
    assert failing(report) == [("0002", "downgrade-failed")]
    [f] = report.revisions[1].findings
    assert 'column "colour"' in f.message and "versions/0002_add_color.py" in f.message


def test_revision_failing_halfway_leaves_previous_revision(pg_cluster, fixtures):
    report = check(fixtures / "halfway", cluster=pg_cluster)
    assert failing(report) == [("0002", "upgrade-failed")]
    [f] = report.revisions[1].findings
    assert "no_such_table" in f.message
    assert "The database is at revision 0001 (verified)" in f.message


def test_two_heads_refused(pg_cluster, fixtures):
    report = check(fixtures / "two_heads", cluster=pg_cluster)
    assert [f.rule for f in report.findings] == ["multiple-heads"]
    assert "0002a" in report.findings[0].message and "0002b" in report.findings[0].message
    assert all(r.roundtrip is None for r in report.revisions)
    assert not report.ok


def test_missing_phase_refused(pg_cluster, fixtures):
    report = check(fixtures / "missing_phase", cluster=pg_cluster)
    assert failing(report) == [("0001", "missing-phase")]
    [f] = report.revisions[0].findings
    assert "versions/0001_create_events.py" in f.message
    assert 'phase = "expand"' in (f.fix or "")


def _suite(fixtures: Path, name: str) -> list[str]:
    return [sys.executable, str(fixtures / "good" / "suites" / f"{name}.py")]


def test_compat_suites_pass_on_the_good_project(pg_cluster, fixtures):
    config = CompatConfig(commands={
        "1": _suite(fixtures, "release_1"), "2": _suite(fixtures, "release_2"),
        "3": _suite(fixtures, "release_3")})
    report = check(fixtures / "good", cluster=pg_cluster, compat=config, roundtrip=False)
    assert [(c.suite_release, c.revision, c.direction, c.passed) for c in report.compat] == [
        ("1", "0003", "old-code-new-schema", True),
        ("2", "0004", "old-code-new-schema", True),
    ], format_report(report)
    assert report.ok


def test_compat_catches_old_code_that_still_writes_the_dropped_column(pg_cluster, fixtures):
    config = CompatConfig(commands={"2": _suite(fixtures, "release_2_still_writes_name")})
    report = check(fixtures / "good", cluster=pg_cluster, compat=config, roundtrip=False)
    [c] = report.compat
    assert not c.passed and c.returncode == 1
    assert 'column "name" of relation "users" does not exist' in c.output_tail
    assert pg_cluster._password not in c.output_tail
    assert not report.ok and "FAIL release 2 suite on release 3 schema" in format_report(report)


def test_seed_hook_is_called_before_each_revision(pg_cluster, fixtures):
    calls = []

    def seed(conn, revision):
        calls.append(revision)

    report = check(fixtures / "good", cluster=pg_cluster, seed=seed)
    assert report.ok
    assert calls == [None, "0001", "0002", "0003"]


def test_project_lab_seed_file_is_used(pg_cluster, fixtures, tmp_path):
    project = shutil.copytree(fixtures / "good", tmp_path / "proj")
    (project / "lab_seed.py").write_text(
        "from sqlalchemy import text\n"
        "def seed(connection, revision):\n"
        "    if revision == '0003':\n"
        "        connection.execute(text(\"INSERT INTO users (name, full_name) \"\n"
        "                                \"VALUES ('x', 'y')\"))\n"
    )
    report = check(project, cluster=pg_cluster)
    # name 'x' cannot be refilled from full_name 'y': the contract's round trip sees it
    assert failing(report) == [("0004", "lossy-downgrade")]
    assert "1 of 1 rows hold another value" in report.revisions[3].findings[0].message


def test_cli_runs_its_own_cluster(fixtures):
    ok = subprocess.run([sys.executable, "-m", "migrations_lab", "check",
                         str(fixtures / "good"), "--json"], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    bad = subprocess.run([sys.executable, "-m", "migrations_lab", "check",
                          str(fixtures / "lossy")], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1
    assert "lossy-downgrade" in bad.stdout and "result: FAIL" in bad.stdout


def test_stock_alembic_init_project_works_and_gets_a_warning(pg_cluster, fixtures, tmp_path):
    """Any Alembic project: the env.py that `alembic init` writes builds its own engine from
    sqlalchemy.url (which the lab points at its database, in memory)."""
    from alembic import command
    from alembic.config import Config

    root = tmp_path / "stock"
    root.mkdir()
    cfg = Config(str(root / "alembic.ini"))
    command.init(cfg, str(root / "migrations"))
    for path in (fixtures / "good" / "versions").glob("*.py"):
        shutil.copy(path, root / "migrations" / "versions" / path.name)
    # its env.py calls logging.config.fileConfig: the host's loggers must survive it
    host = logging.getLogger("lab-host-app")
    host.addHandler(logging.NullHandler())
    report = check(root, cluster=pg_cluster)
    assert not host.disabled and host.handlers, "env.py reconfigured the host's logging"
    assert report.ok, format_report(report)
    assert [(f.rule, f.severity) for f in report.findings] == [
        ("env-ignores-connection", "warning")]
    assert "apply_timeouts" in (report.findings[0].fix or "")
