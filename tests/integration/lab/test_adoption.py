"""Adoption on an existing project: env.py conventions, baseline, --since, suggested phases,
the release's own interpreter. Real PostgreSQL (the session cluster), real Alembic."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_delivery.migrations_lab import check, format_report
from prefect_delivery.migrations_lab.cli import main

ENVPY = Path(__file__).resolve().parents[2] / "fixtures" / "envpy"


def failing(report):
    return sorted((f.revision, f.rule) for f in report.all_findings() if f.failing)


@pytest.mark.parametrize(("convention", "own_connection"), [
    ("connection", False),
    ("engine", False),
    ("sqlalchemy_url", True),
    ("env_var", True),
    ("custom_env_var", True),
    ("async_worker", True),  # Prefect's: url_driver asyncpg, run from an AnyIO worker thread
])
def test_every_common_env_py_convention_is_driven(pg_cluster, monkeypatch, convention,
                                                  own_connection):
    # a DATABASE_URL of the user's shell must never be what env.py reaches
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/not_the_lab")
    monkeypatch.setenv("NOTES_DB", "postgresql://nobody@127.0.0.1:1/not_the_lab")
    report = check(ENVPY / convention, cluster=pg_cluster)
    assert report.ok, format_report(report)
    assert [r.roundtrip.status for r in report.revisions] == ["passed", "passed"]
    warned = [f.rule for f in report.findings]
    assert warned == (["env-ignores-connection"] if own_connection else [])


def test_an_env_py_the_lab_cannot_drive_gets_one_clear_message(pg_cluster, capsys):
    report = check(ENVPY / "undrivable", cluster=pg_cluster)
    assert not report.ok
    first = report.revisions[0].findings[0]
    assert first.rule == "upgrade-failed"
    assert first.message.startswith("env.py:13: the lab cannot drive this env.py")
    assert "KeyError: 'NOTES_SERVICE_DSN'" in first.message
    assert "config.attributes['connection']" in first.message
    assert "DATABASE_URL" in first.message
    assert "url_env" in (first.fix or "")
    assert [f.rule for f in report.revisions[1].findings] == ["not-reached"]


def _without_phase(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    shutil.copytree(ENVPY / "connection", root)
    for rev in root.glob("versions/*.py"):
        rev.write_text(rev.read_text().replace('phase = "expand"\n', ""))
    return root


def test_unannotated_history_gets_suggested_phases_with_the_line_to_add(pg_cluster, tmp_path):
    root = _without_phase(tmp_path)
    report = check(root, cluster=pg_cluster)
    assert failing(report) == [("0001", "missing-phase"), ("0002", "missing-phase")]
    fixes = [f.fix for r in report.revisions for f in r.findings]
    assert fixes == [
        "add the line `phase = \"expand\"` to versions/0001_create_notes.py (suggested from "
        "its SQL: it creates table notes)",
        "add the line `phase = \"expand\"` to versions/0002_add_title.py (suggested from its "
        "SQL: it adds column notes.title)",
    ]
    assert [r.suggested_phase for r in report.revisions] == ["expand", "expand"]


def test_baseline_in_alembic_ini_makes_revisions_history(pg_cluster, tmp_path):
    root = _without_phase(tmp_path)
    ini = root / "alembic.ini"
    ini.write_text(ini.read_text() + "\n[migrations_lab]\nbaseline = 0001\n")
    report = check(root, cluster=pg_cluster)
    assert report.baseline == "0001"
    assert [r.judged for r in report.revisions] == ["history", "full"]
    # history: round-tripped, not phase-judged, not linted
    assert report.revisions[0].roundtrip.status == "passed"
    assert report.revisions[0].findings == [] and not report.revisions[0].linted
    assert failing(report) == [("0002", "missing-phase")]


def _production_dump(root: Path, db, tmp_path: Path) -> Path:
    """What a user dumps from production: the database at the head, schema only."""
    from prefect_delivery.migrations_lab import apply_pending
    from prefect_delivery.migrations_lab.postgres import find_bindir

    apply_pending(root, db.url)
    url = db.url.get_secret_value().replace("postgresql+psycopg://", "postgresql://")
    dump = tmp_path / "production.sql"
    dump.write_text(subprocess.run(
        [str(find_bindir() / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
         "-d", url], check=True, capture_output=True, text=True).stdout)
    return dump


def _baseline_from(root: Path, dump: Path, baseline: str) -> None:
    ini = root / "alembic.ini"
    ini.write_text(ini.read_text() + f"\n[migrations_lab]\nbaseline = {baseline}\n"
                   f"baseline_schema = {dump}\n")


def test_history_from_a_dump_is_round_tripped_from_the_baseline_down(pg_cluster, db, tmp_path):
    root = _without_phase(tmp_path)
    _baseline_from(root, _production_dump(root, db, tmp_path), "0002")
    report = check(root, cluster=pg_cluster)
    text = format_report(report)
    assert report.ok, text
    assert "2 revisions of history: round-tripped from baseline_schema down" in text
    for r in report.revisions:
        assert r.judged == "history" and r.roundtrip.status == "passed", text
        assert [s.name for s in r.roundtrip.steps] == ["downgrade", "upgrade",
                                                       "downgrade again"]


def test_a_history_downgrade_that_fails_stops_the_descent_and_says_where(pg_cluster, db,
                                                                         tmp_path):
    root = _without_phase(tmp_path)
    dump = _production_dump(root, db, tmp_path)
    second = root / "versions" / "0002_add_title.py"
    second.write_text(second.read_text().replace(
        'op.drop_column("notes", "title")', 'raise NotImplementedError("no way back")'))
    _baseline_from(root, dump, "0002")
    report = check(root, cluster=pg_cluster)
    text = format_report(report)
    first, top = report.revisions
    assert top.roundtrip.status == "failed", text
    (down,) = [f for f in top.findings if f.rule == "downgrade-failed"]
    assert down.severity == "warning" and down.message.startswith("[history]")
    assert "0002_add_title.py:" in down.message and "no way back" in down.message
    assert first.roundtrip.status == "skipped"
    assert "not reached: revision 0002 could not be downgraded" in text
    # history is never judged: a warning, not an error
    assert failing(report) == []


def test_baseline_in_delivery_toml_and_cli_since(pg_cluster, tmp_path, capsys):
    root = _without_phase(tmp_path)
    (tmp_path / "delivery.toml").write_text('[lab]\nbaseline = "0002"\n')
    report = check(root, cluster=pg_cluster)
    assert report.ok, format_report(report)
    assert [r.judged for r in report.revisions] == ["history", "history"]

    good = Path(__file__).resolve().parents[2] / "fixtures" / "alembic" / "good"
    code = main(["check", str(good), "--since", "0002"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "since: 0002 (2 revisions only upgraded)" in out
    assert "0003  migrate" in out and "0004  contract" in out
    assert "0001_create_users" not in out  # upgraded on the way, nothing to say
    # 0004's SET NOT NULL is safe because 0003 validated a CHECK: that still counts when
    # 0003 itself is not judged
    assert main(["check", str(good), "--since", "0003", "--no-roundtrip"]) == 0, \
        capsys.readouterr().out


def test_bad_adoption_settings_are_one_message_and_exit_2(tmp_path, capsys):
    root = _without_phase(tmp_path)
    ini = root / "alembic.ini"
    ini.write_text(ini.read_text() + "\n[migrations_lab]\nbaseline = 9999\n")
    assert main(["check", str(root), "--no-roundtrip"]) == 2
    err = capsys.readouterr().err
    assert f"{ini} [migrations_lab] baseline: '9999' is not a revision of" in err
    assert "Fix: use a revision id from `alembic history`" in err

    ini.write_text(ini.read_text().replace("baseline = 9999", "basline = 0001"))
    assert main(["check", str(root), "--no-roundtrip"]) == 2
    assert "basline: is not a lab setting" in capsys.readouterr().err

    ini.write_text(ini.read_text().replace("basline = 0001", "baseline = 0001"))
    assert main(["check", str(root), "--no-roundtrip", "--since", "77"]) == 2
    assert "--since: '77' is not a revision" in capsys.readouterr().err


def test_hello_service_in_a_release_interpreter_named_relatively(monkeypatch, capsys):
    """--python as a user types it (relative to the working directory): env.py (which imports
    migrations_lab.apply_timeouts) runs in that interpreter's subprocess."""
    repo = Path(__file__).resolve().parents[3]
    monkeypatch.chdir(repo)
    venv = Path(sys.prefix).relative_to(repo) if Path(sys.prefix).is_relative_to(repo) \
        else Path(sys.prefix)
    code = main(["check", "examples/hello-service", "--python", str(venv)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"env.py runs in: {repo / venv}/bin/python" in out
    assert out.count("round trip: passed") == 4


def test_python_without_alembic_is_refused_with_the_fix(tmp_path, capsys):
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    code = main(["check", str(ENVPY / "connection"), "--no-roundtrip", "--python", str(venv)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"python {venv}/bin/python" in err and "cannot import alembic" in err
    assert "Fix: pip install the release" in err

    assert main(["check", str(ENVPY / "connection"), "--python", str(tmp_path / "nope")]) == 2
    assert "is not an executable interpreter" in capsys.readouterr().err


def test_apply_to_a_real_database_keeps_its_url_out_of_the_environment(db, monkeypatch):
    """In the lab's own interpreter, applying to a real database never puts its URL (with the
    password) into os.environ, where other threads and their children would see it: an env.py
    that reads DATABASE_URL gets the process's own value, and the lab says it cannot drive it."""
    from prefect_delivery.migrations_lab import MigrationFailed, apply_pending

    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/not_the_lab")
    with pytest.raises(MigrationFailed) as err:
        apply_pending(ENVPY / "env_var", db.url)
    assert "the lab cannot drive this env.py" in str(err.value)
    # env.py reached the process's own DATABASE_URL (nothing listens on port 1)
    assert "OperationalError" in str(err.value) and "port 1 failed" in str(err.value)
    # the cookbook convention applies fine
    result = apply_pending(ENVPY / "connection", db.url)
    assert result.to_revision == "0002"
