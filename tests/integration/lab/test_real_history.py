"""The lab on a real open-source history from PyPI: JupyterHub's 19 revisions, installed in
virtualenvs made by this test, round-tripped revision by revision on real PostgreSQL.

Adoption as a JupyterHub operator would do it: production runs JupyterHub 4.1.6 (its
database is at 4.1.6's head, 0eee8c825d24); the release to ship is 6.1.1. The baseline is the
production revision, the schema at it is a pg_dump of a database JupyterHub 4.1.6 created
itself; the six revisions 6.1.1 brings are judged in full."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.real_history import (
    CURRENT,
    PRODUCTION,
    PRODUCTION_HEAD,
    adoption_ini,
    make_venvs,
    production_schema,
    site_dir,
)

from prefect_delivery.migrations_lab import check, format_report
from prefect_delivery.migrations_lab.postgres import find_bindir

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "jupyterhub"
AFTER_BASELINE = ["3c2384c5aae1", "4621fec11365", "be8ecf03ddac", "afd65840b69e",
                  "ff1860e38070", "f460b0348206"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("jupyterhub")
    venvs = make_venvs(root, {"current": CURRENT, "production": PRODUCTION})
    return root, venvs, site_dir(venvs["current"], "jupyterhub") / "alembic"


@pytest.fixture(scope="module")
def production_dump(hub, pg_cluster) -> Path:
    root, venvs, _ = hub
    with pg_cluster.database() as db:
        sql = production_schema(venvs["production"], db.url.get_secret_value(),
                                find_bindir() / "pg_dump")
    path = root / "production.sql"
    path.write_text(sql)
    return path


def test_jupyterhub_with_a_baseline_judges_only_what_the_release_brings(
        hub, production_dump, pg_cluster):
    root, venvs, alembic_dir = hub
    ini = adoption_ini(root / "adopt", alembic_dir, {
        "python": str(venvs["current"]),
        "baseline": PRODUCTION_HEAD,
        "baseline_schema": str(production_dump),
    })
    report = check(ini, cluster=pg_cluster)
    text = format_report(report)
    revs = {r.revision: r for r in report.revisions}
    assert len(revs) == 19, text
    assert report.python == f"{venvs['current']}/bin/python"
    judged = [r.revision for r in report.revisions if r.judged == "full"]
    assert judged == AFTER_BASELINE, text
    # history: the lab goes down from production's dump, the way rolling production back
    # would. JupyterHub's own head cannot be downgraded (its downgrade() hands drop_column a
    # Column, which no SQLAlchemy since 1.4 accepts: a real JupyterHub bug), so nothing below
    # it is reached; the lab says where, as a warning (history is never judged)
    top = revs[PRODUCTION_HEAD]
    assert top.judged == "history" and top.roundtrip.status == "failed", text
    (down,) = [f for f in top.findings if f.rule == "downgrade-failed"]
    assert down.severity == "warning" and down.message.startswith("[history]")
    assert "0eee8c825d24_added_properties_column.py:29" in down.message
    for r in report.revisions[:12]:
        assert r.judged == "history" and r.findings == [], text
        assert r.roundtrip.status == "skipped"
        assert r.roundtrip.notes == [f"not reached: revision {PRODUCTION_HEAD} could not be "
                                     "downgraded on the way down from baseline_schema"]
    # every revision after the baseline went up on env.py's Engine convention ...
    for rev in AFTER_BASELINE:
        steps = {s.name: s.ok for s in revs[rev].roundtrip.steps}
        assert steps["upgrade"], text
    assert "has no attribute 'connect'" not in text
    # ... and five of six went down and up again to the same schema and data
    assert [r for r in AFTER_BASELINE if revs[r].roundtrip.status == "passed"] == \
        AFTER_BASELINE[1:], text

    # the findings are JupyterHub's own, and only after the baseline
    got = sorted((f.revision, f.rule) for f in report.all_findings() if f.failing)
    assert got == sorted(
        [(r, "missing-phase") for r in AFTER_BASELINE]
        + [("3c2384c5aae1", "downgrade-failed")]
        + [(r, "offline-render-failed") for r in ("3c2384c5aae1", "4621fec11365",
                                                  "afd65840b69e")]
        + [(r, "missing-lock-timeout") for r in ("be8ecf03ddac", "ff1860e38070",
                                                 "f460b0348206")]
    ), text
    down = next(f for f in revs["3c2384c5aae1"].findings if f.rule == "downgrade-failed")
    # its downgrade() builds a Column the SQLAlchemy 1.x way: real under SQLAlchemy 2
    assert "3c2384c5aae1_add_from_config_column_to_the_services_.py:" in down.message
    assert "TypeError: Column._set_parent()" in down.message
    assert "The database is at revision 3c2384c5aae1 (verified)" in down.message
    # the revisions the lab can render get a suggested phase and the line to add
    for rev, column in (("be8ecf03ddac", "services.timeout"), ("ff1860e38070",
                        "users.user_info"), ("f460b0348206", "spawners.display_name")):
        assert revs[rev].suggested_phase == "expand"
        assert f"it adds column {column}" in revs[rev].suggestion
        assert "add the line `phase = \"expand\"` to " in revs[rev].suggestion
    # those it cannot render offline: suggested from what they ran on the ephemeral database
    for rev, phase, why in (("3c2384c5aae1", "migrate", "it updates services"),
                            ("4621fec11365", "expand", "it adds column group_role_map."),
                            ("afd65840b69e", "expand", "it adds column oauth_codes.")):
        assert revs[rev].suggested_phase == phase, revs[rev].suggestion
        assert f"the SQL it ran on the ephemeral database (none offline): {why}" in \
            revs[rev].suggestion


def test_jupyterhub_whole_history_replayed_from_its_0_5_schema(hub, pg_cluster):
    """Without a dump: the history replayed from the 0.5 schema its first revision assumes.
    Every revision up to 56cc5a70207e goes up on the Engine convention; 99a28a4418e1 cannot
    (its utcnow() calls datetime._replace, a JupyterHub bug): the lab says where, and that
    nothing after it was reached."""
    root, venvs, alembic_dir = hub
    ini = adoption_ini(root / "replay", alembic_dir, {
        "python": str(venvs["current"]),
        "baseline": "99a28a4418e1",
        "base_schema": str(FIXTURES / "base_0_5.sql"),
    })
    report = check(ini, cluster=pg_cluster)
    text = format_report(report)
    order = [r.revision for r in report.revisions]
    broken = order.index("99a28a4418e1")
    for r in report.revisions[:broken]:
        assert r.roundtrip.steps[1].name == "upgrade" and r.roundtrip.steps[1].ok, text
    up = next(f for f in report.revisions[broken].findings if f.rule == "upgrade-failed")
    assert "99a28a4418e1_user_created.py:23" in up.message
    assert "'datetime.datetime' object has no attribute '_replace'" in up.message
    assert up.severity == "warning" and up.message.startswith("[history]")  # history
    after = report.revisions[broken + 1:]
    assert after and all(r.roundtrip.status == "skipped" for r in after)
    assert {f.rule for r in after for f in r.findings if f.failing} >= {"not-reached"}
    assert not report.ok


def test_without_the_release_interpreter_the_lab_says_to_name_it(hub, capsys):
    from prefect_delivery.migrations_lab.cli import main

    root, _, alembic_dir = hub
    ini = adoption_ini(root / "no-python", alembic_dir, {})
    assert main(["check", str(ini), "--no-roundtrip"]) == 2
    err = capsys.readouterr().err
    assert "Alembic cannot read the revisions (in the lab's interpreter" in err
    assert "ModuleNotFoundError: No module named 'jupyterhub'" in err
    assert "run the lab with the release's interpreter (--python PATH" in err


@pytest.mark.slow
def test_prefect_whole_history_every_revision_round_tripped(pg_cluster, tmp_path):
    """Prefect's server history (over a hundred revisions since 2021) from an empty database,
    the last three judged: every revision is reached and round-tripped; the history's own
    problems are warnings, and after the baseline only real findings remain."""
    from support.real_history import prefect_adoption

    from prefect_delivery.migrations_lab.apply import UNDRIVABLE

    ini, order = prefect_adoption(tmp_path / "prefect")
    report = check(ini, cluster=pg_cluster)
    assert report.baseline == order[-4]
    text = format_report(report)
    revs = {r.revision: r for r in report.revisions}
    assert list(revs) == order and len(order) >= 100, text
    # every revision round-tripped: none skipped, none left unreached, env.py always driven
    # (an asyncpg engine of its own, from an AnyIO worker thread)
    assert {r.roundtrip.status for r in report.revisions} <= {"passed", "failed"}, text
    assert "not reached" not in text and UNDRIVABLE not in text
    assert [f.rule for f in report.findings] == ["env-ignores-connection"]
    # after the baseline: round trips pass; the findings are real (no phases yet, and
    # whatever lint says of their SQL), never the lab's
    judged = [r for r in report.revisions if r.judged == "full"]
    assert [r.revision for r in judged] == order[-3:]
    for r in judged:
        assert r.roundtrip.status == "passed", text
        assert "missing-phase" in {f.rule for f in r.findings}
    assert {f.revision for f in report.all_findings() if f.failing} <= set(order[-3:])
    # history: Prefect's own old problems, reported as warnings, and the round trip goes on
    history = [f for r in report.revisions if r.judged == "history" for f in r.findings]
    assert history and all(f.severity == "warning" and f.message.startswith("[history]")
                           for f in history)
    found = {(f.revision, f.rule) for f in history}
    # a NOT NULL column without a default on a table with rows: fails on the seeded data,
    # works on the empty schema, so the database is rebuilt without rows and the lab goes on
    assert ("b68b3cad6b8a", "upgrade-failed") in found
    assert "NotNullViolation" in next(f.message for f in history if f.revision == "b68b3cad6b8a")
    assert any("rebuilt from base up to b68b3cad6b8a (without seed data)" in n
               for n in revs["b68b3cad6b8a"].roundtrip.notes)
    # a backfill whose downgrade keeps what it filled in
    assert ("14dc68cc5853", "lossy-downgrade") in found
