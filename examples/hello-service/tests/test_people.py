"""/api/people on both schemas, on SQLite (no PostgreSQL needed), and without a database.

The tables are built by hand in the shape each revision leaves them (see migrations/), so the
code of each mode is checked against the schema it must work with: ``name`` mode before and
after the expand, ``split`` mode after the backfill and after the contract.
"""

from importlib import resources

import pytest
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from hello_service.app import create_app
from hello_service.faults import parse_fault
from hello_service.people import PeopleConfigError, engine_url, split_name
from hello_service.release import ReleaseInfo

RELEASE = ReleaseInfo(version="9.9.9", commit="c" * 40)
NAMES = ["Ada Lovelace", "Edsger Wybe Dijkstra", "Hypatia"]
EXPECTED = [
    {"id": 1, "first_name": "Ada", "last_name": "Lovelace"},
    {"id": 2, "first_name": "Edsger", "last_name": "Wybe Dijkstra"},
    {"id": 3, "first_name": "Hypatia", "last_name": None},
]

# the schema after each revision (SQLite spelling of what the revisions create)
SCHEMAS = {
    "0001": "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    "0002": "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "first_name TEXT, last_name TEXT)",
    "0003": "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "first_name TEXT, last_name TEXT)",
    "0004": "CREATE TABLE people (id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT)",
}


def database(tmp_path, revision: str) -> str:
    url = f"sqlite:///{tmp_path / f'people-{revision}.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(SCHEMAS[revision]))
        for name in NAMES:
            first, last = split_name(name)
            if revision in ("0001", "0002"):  # before the backfill: only name is set
                conn.execute(text("INSERT INTO people (name) VALUES (:n)"), {"n": name})
            elif revision == "0003":
                conn.execute(
                    text("INSERT INTO people (name, first_name, last_name) VALUES (:n, :f, :l)"),
                    {"n": name, "f": first, "l": last},
                )
            else:
                conn.execute(
                    text("INSERT INTO people (first_name, last_name) VALUES (:f, :l)"),
                    {"f": first, "l": last},
                )
    engine.dispose()
    return url


def client(url: str | None, schema: str, fault: str = "none") -> TestClient:
    return TestClient(
        create_app(
            fault=parse_fault(fault), release=RELEASE, seed=1, database_url=url or "",
            people_schema=schema,
        )
    )


@pytest.mark.parametrize(
    "schema,revision",
    [("name", "0001"), ("name", "0002"), ("name", "0003"), ("split", "0003"), ("split", "0004")],
)
def test_each_code_mode_reads_the_schemas_it_must_work_with(tmp_path, schema, revision):
    body = client(database(tmp_path, revision), schema).get("/api/people").json()
    assert body["people"] == EXPECTED
    assert body["database"] is True
    assert body["schema"] == schema
    assert body["version"] == "9.9.9"


def test_split_mode_cannot_run_before_the_backfill_columns_exist(tmp_path):
    response = client(database(tmp_path, "0001"), "split").get("/api/people")
    assert response.status_code == 503
    assert response.json()["error"] == "database unavailable"


def test_name_mode_breaks_after_the_contract(tmp_path):
    # why release 2 must not run once 0004 is applied: the pipeline's gates prevent it
    assert client(database(tmp_path, "0004"), "name").get("/api/people").status_code == 503


def test_without_a_database_it_answers_empty(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = create_app(fault=parse_fault("none"), release=RELEASE, people_schema="split")
    body = TestClient(app).get("/api/people").json()
    assert body["people"] == [] and body["database"] is False


def test_database_url_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database(tmp_path, "0004"))
    app = create_app(fault=parse_fault("none"), release=RELEASE, people_schema="split")
    assert TestClient(app).get("/api/people").json()["people"] == EXPECTED


def test_people_counts_in_stats_and_faults_apply(tmp_path):
    url = database(tmp_path, "0004")
    faulty = client(url, "split", fault="error:1")
    assert faulty.get("/api/people").status_code == 500
    ok = client(url, "split")
    ok.get("/api/people")
    assert ok.get("/api/stats").json()["requests"] == 2


@pytest.mark.parametrize(
    "name,parts",
    [("Ada Lovelace", ("Ada", "Lovelace")), ("Hypatia", ("Hypatia", None)),
     ("Ada ", ("Ada", "")), ("A B C", ("A", "B C"))],
)
def test_split_name_matches_the_backfill_rule(name, parts):
    assert split_name(name) == parts


def test_bad_database_url_is_refused_without_showing_it():
    with pytest.raises(PeopleConfigError) as info:
        create_app(release=RELEASE, database_url="nonsense://user:s3cret@host/db")
    assert "s3cret" not in str(info.value)


def test_postgres_urls_use_psycopg_3():
    assert engine_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert engine_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert engine_url("sqlite:///x.db") == "sqlite:///x.db"


def test_the_migrations_travel_inside_the_package():
    folder = resources.files("hello_service").joinpath("migrations")
    assert folder.joinpath("alembic.ini").is_file()
    revisions = sorted(p.name for p in folder.joinpath("versions").iterdir()
                       if p.name.endswith(".py"))
    assert revisions and revisions[0].startswith("0001_")
    assert folder.joinpath("env.py").is_file()  # (the pipeline's lab checks their phases)
