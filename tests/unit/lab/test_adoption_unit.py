"""Pure adoption logic: suggested phases, lab settings, baseline scope."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_delivery.migrations_lab.baseline import scope
from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.phases import PhasePlan, RevisionInfo
from prefect_delivery.migrations_lab.settings import DEFAULT_URL_ENV, load_settings
from prefect_delivery.migrations_lab.suggest import suggest_phase


@pytest.mark.parametrize(("sql", "phase", "reason"), [
    ("CREATE TABLE notes (id SERIAL PRIMARY KEY);", "expand", "it creates table notes"),
    ("ALTER TABLE users ADD COLUMN nick TEXT;", "expand", "it adds column users.nick"),
    ("ALTER TABLE s ADD COLUMN timeout INTEGER DEFAULT '30' NOT NULL;", "expand",
     "it adds column s.timeout"),
    ("CREATE INDEX CONCURRENTLY ix ON users (nick);", "expand", "it creates an index"),
    ("ALTER TABLE users ADD COLUMN nick TEXT;\nUPDATE users SET nick = name WHERE id < 10;",
     "migrate", "it updates users"),
    ("ALTER TABLE users DROP COLUMN name;", "contract", "it drops column users.name"),
    ("DROP TABLE proxies;", "contract", "it drops table proxies"),
    ("ALTER TABLE users ALTER COLUMN nick SET NOT NULL;", "contract",
     "it enforces NOT NULL on users"),
    ("ALTER TABLE users ADD COLUMN code TEXT NOT NULL;", "contract",
     "it adds NOT NULL column users.code without a default"),
    ("CREATE TABLE tmp (id INT);\nDROP TABLE tmp;", "expand", "it creates table tmp"),
    ("", "expand", "it changes no schema"),
    ("INSERT INTO alembic_version (version_num) VALUES ('x');", "expand",
     "it changes no schema"),
])
def test_suggested_phase_from_sql(sql, phase, reason):
    s = suggest_phase(sql)
    assert s.phase == phase
    assert s.reason.startswith(reason)
    assert s.line == f'phase = "{phase}"'


def test_a_rename_fits_no_phase():
    s = suggest_phase("ALTER TABLE users RENAME COLUMN name TO full_name;")
    assert s.phase is None and s.line is None
    assert "no phase fits" in s.text("versions/x.py")


def _ini(tmp_path: Path, section: str = "") -> Path:
    ini = tmp_path / "svc" / "migrations" / "alembic.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[alembic]\nscript_location = %(here)s\n" + section)
    return ini


def test_settings_defaults_ini_toml_and_cli_precedence(tmp_path):
    ini = _ini(tmp_path, "[migrations_lab]\nbaseline = aaa\nurl_env = HUB_DB, OTHER_URL\n"
                         "python = ../.venv\n")
    s = load_settings(ini)
    assert s.baseline == "aaa" and s.url_env == ["HUB_DB", "OTHER_URL"]
    assert s.python == str(ini.parent / "../.venv")
    assert s.source("baseline") == f"{ini} [migrations_lab] baseline"

    (tmp_path / "svc" / "delivery.toml").write_text('[lab]\nbaseline = "bbb"\n')
    s = load_settings(ini)
    assert s.baseline == "bbb" and s.url_env == ["HUB_DB", "OTHER_URL"]
    assert s.source("baseline").endswith("delivery.toml [lab] baseline")
    assert load_settings(ini, baseline="ccc", since=None).baseline == "ccc"

    defaults = load_settings(_ini(tmp_path / "other"))
    assert defaults.url_env == list(DEFAULT_URL_ENV) and defaults.url_driver is None
    driven = _ini(tmp_path / "async", "[migrations_lab]\nurl_driver = postgresql+asyncpg\n")
    assert load_settings(driven).url_driver == "postgresql+asyncpg"


@pytest.mark.parametrize(("section", "expected"), [
    ("[migrations_lab]\nbasline = x\n", "basline: is not a lab setting"),
    ("[migrations_lab]\nurl_env = 9LIVES\n", "url_env: '9LIVES' is not an environment variable"),
    ("[migrations_lab]\nbaseline_schema = prod.sql\n", "is set without a baseline"),
    ("[migrations_lab]\nurl_driver = asyncpg\n",
     "url_driver: 'asyncpg' is not a PostgreSQL dialect+driver such as postgresql+asyncpg"),
])
def test_bad_settings_name_the_file_the_key_and_the_fix(tmp_path, section, expected):
    with pytest.raises(LabConfigError) as err:
        load_settings(_ini(tmp_path, section))
    assert expected in str(err.value) and "Fix:" in str(err.value)


def test_bad_delivery_toml_lab_table(tmp_path):
    ini = _ini(tmp_path)
    (tmp_path / "svc" / "delivery.toml").write_text('[lab]\npython = 3\n')
    with pytest.raises(LabConfigError, match=r"delivery.toml \[lab\] python"):
        load_settings(ini)


def _plan(*revs: str) -> PhasePlan:
    infos = [RevisionInfo(revision=r, down_revision=revs[i - 1] if i else None, path=f"{r}.py",
                          release=r) for i, r in enumerate(revs)]
    return PhasePlan(project="p", revisions=infos, heads=[revs[-1]])


def test_scope_baseline_since_and_prefixes():
    plan = _plan("19c0846f6344", "eeb276e51423", "af4cbdb2d13c", "3ec6993fe20c")
    s = scope(plan, baseline="eeb2", since=None)
    assert s.baseline == "eeb276e51423"
    assert [s.of(r.revision) for r in plan.revisions] == ["history", "history", "full", "full"]
    s = scope(plan, baseline="19c0846f6344", since="af4cbdb2d13c")
    assert [s.of(r.revision) for r in plan.revisions] == [
        "upgraded", "upgraded", "upgraded", "full"]
    with pytest.raises(LabConfigError, match="is not a revision of p"):
        scope(plan, baseline="zzz", baseline_where="delivery.toml [lab] baseline")
    with pytest.raises(LabConfigError, match="matches 2 revisions"):
        scope(_plan("ab1", "ab2"), baseline="ab")


def test_the_service_manifest_accepts_the_lab_table(tmp_path):
    """delivery.toml is also the pipeline's manifest: a [lab] table must not break it."""
    from prefect_delivery.tasks.manifest import parse_manifest

    hello = Path(__file__).resolve().parents[3] / "examples" / "hello-service"
    text = (hello / "delivery.toml").read_text() + '\n[lab]\nbaseline = "0002"\n'
    assert parse_manifest(text).lab == {"baseline": "0002"}
    ini = _ini(tmp_path)
    (tmp_path / "svc" / "delivery.toml").write_text(text)
    assert load_settings(ini).baseline == "0002"
