"""Linter rules on SQL text: one test per rule, the safe form of each, and waivers."""

from __future__ import annotations

import re

import pytest

from prefect_delivery.migrations_lab.lint import RULES, LintState, lint_project, lint_sql
from prefect_delivery.migrations_lab.phases import RevisionInfo, read_plan
from prefect_delivery.migrations_lab.project import AlembicProject

LT = "SET lock_timeout = '2s';\n"


def info(
    phase: str = "expand", drops: list[str] | None = None, waivers: dict | None = None
) -> RevisionInfo:
    return RevisionInfo(
        revision="r1",
        down_revision=None,
        path="versions/r1.py",
        phase=phase,
        release="1",
        drops=drops or [],
        waivers=waivers or {},
    )


def found(sql: str, phase: str = "expand", **kw) -> list[str]:
    """Rule ids of the failing findings (errors not waived)."""
    return [f.rule for f in lint_sql(sql, info(phase, **kw)) if f.failing]


def test_rule_ids_are_stable_kebab_case_with_why_and_fix():
    for rule_id, rule in RULES.items():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", rule_id), rule_id
        assert rule.id == rule_id and rule.why and rule.fix


def test_finding_names_revision_statement_why_and_safe_form():
    [f] = lint_sql(LT + "CREATE INDEX ix_a ON orders (a);", info())
    assert f.rule == "create-index-not-concurrently"
    assert "r1" in f.message and "versions/r1.py" in f.message
    assert f.statement == "CREATE INDEX ix_a ON orders (a)"
    assert "SHARE lock" in (f.why or "")
    assert "CONCURRENTLY" in (f.fix or "")
    assert f.target == "ix_a" and f.table == "orders"


def test_create_index_without_concurrently():
    assert found(LT + "CREATE UNIQUE INDEX ix ON t (a);") == ["create-index-not-concurrently"]
    assert found(LT + "COMMIT; CREATE INDEX CONCURRENTLY ix ON t (a); BEGIN;") == []


def test_drop_index_without_concurrently():
    assert found(LT + "DROP INDEX ix;") == ["drop-index-not-concurrently"]
    assert found(LT + "DROP INDEX CONCURRENTLY IF EXISTS ix;") == []


def test_concurrently_inside_a_transaction_block():
    sql = "BEGIN;\n" + LT + "CREATE INDEX CONCURRENTLY ix ON t (a);\nCOMMIT;"
    assert found(sql) == ["concurrently-in-transaction"]


def test_add_column_not_null_without_default():
    assert found(LT + "ALTER TABLE t ADD COLUMN c TEXT NOT NULL;") == [
        "add-column-not-null-without-default"
    ]
    assert found(LT + "ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'x' NOT NULL;") == []
    assert found(LT + "ALTER TABLE t ADD COLUMN c TEXT;") == []


def test_add_column_that_rewrites():
    for definition in (
        "UUID DEFAULT gen_random_uuid()",
        "FLOAT DEFAULT random() NOT NULL",
        "BIGSERIAL",
        "BIGINT GENERATED ALWAYS AS IDENTITY",
        "INT GENERATED ALWAYS AS (a * 2) STORED",
    ):
        assert found(LT + f"ALTER TABLE t ADD COLUMN c {definition};") == ["add-column-rewrite"], (
            definition
        )
    assert found(LT + "ALTER TABLE t ADD COLUMN c TIMESTAMPTZ DEFAULT now();") == []


def test_set_not_null_is_flagged():
    assert found(LT + "ALTER TABLE t ALTER COLUMN c SET NOT NULL;") == ["set-not-null"]


def test_set_not_null_after_a_validated_check_is_safe():
    sql = LT + (
        "ALTER TABLE t ADD CONSTRAINT ck CHECK (c IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE t VALIDATE CONSTRAINT ck;\n"
        "ALTER TABLE t ALTER COLUMN c SET NOT NULL;\n"
    )
    assert found(sql) == []
    # NOT VALID but never validated does not count
    unvalidated = LT + (
        "ALTER TABLE t ADD CONSTRAINT ck CHECK (c IS NOT NULL) NOT VALID;\n"
        "ALTER TABLE t ALTER COLUMN c SET NOT NULL;\n"
    )
    assert found(unvalidated) == ["set-not-null"]


def test_validated_check_carries_over_from_an_earlier_revision():
    state = LintState()
    lint_sql(
        LT + "ALTER TABLE t ADD CONSTRAINT ck CHECK (c IS NOT NULL) NOT VALID;"
        "ALTER TABLE t VALIDATE CONSTRAINT ck;",
        info("migrate"),
        state,
    )
    later = lint_sql(LT + "ALTER TABLE t ALTER COLUMN c SET NOT NULL;", info("contract"), state)
    assert [f.rule for f in later] == []


def test_alter_column_type():
    assert found(LT + "ALTER TABLE t ALTER COLUMN c TYPE BIGINT;") == ["alter-column-type"]
    assert found(LT + "ALTER TABLE t ALTER c SET DATA TYPE TEXT USING c::text;") == [
        "alter-column-type"
    ]


def test_add_foreign_key_without_not_valid():
    sql = "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY(a) REFERENCES p (id)"
    assert found(LT + sql + ";") == ["add-foreign-key-without-not-valid"]
    assert found(LT + sql + " NOT VALID;") == []


def test_add_check_without_not_valid():
    assert found(LT + "ALTER TABLE t ADD CONSTRAINT ck CHECK (a > 0);") == [
        "add-check-without-not-valid"
    ]
    assert found(LT + "ALTER TABLE t ADD CONSTRAINT ck CHECK (a > 0) NOT VALID;") == []


def test_add_unique_constraint_without_index():
    assert found(LT + "ALTER TABLE t ADD CONSTRAINT uq UNIQUE (a);") == ["add-unique-without-index"]
    assert found(LT + "ALTER TABLE t ADD CONSTRAINT uq UNIQUE USING INDEX ix;") == []


def test_rename_column_and_table():
    assert found(LT + "ALTER TABLE t RENAME a TO b;") == ["rename-column"]
    assert found(LT + "ALTER TABLE t RENAME COLUMN a TO b;") == ["rename-column"]
    assert found(LT + "ALTER TABLE t RENAME TO u;") == ["rename-table"]
    assert found(LT + "ALTER TABLE t RENAME CONSTRAINT a TO b;") == []


def test_drop_column_outside_contract():
    assert found(LT + "ALTER TABLE t DROP COLUMN a;") == ["drop-column-outside-contract"]
    assert found(LT + "ALTER TABLE t DROP COLUMN a;", "migrate") == ["drop-column-outside-contract"]
    assert found(LT + "ALTER TABLE t DROP COLUMN a;", "contract", drops=["t.a"]) == []
    assert found(LT + "ALTER TABLE t ALTER COLUMN a DROP NOT NULL;") == []


def test_drop_table_outside_contract():
    assert found(LT + "DROP TABLE t;") == ["drop-table-outside-contract"]
    assert found(LT + "DROP TABLE IF EXISTS t CASCADE;", "contract", drops=["t"]) == []


def test_contract_must_declare_what_it_drops():
    assert found(LT + "ALTER TABLE t DROP COLUMN a;", "contract", drops=["t.b"]) == [
        "undeclared-drop"
    ]
    warnings = [f for f in lint_sql(LT + "SELECT 1;", info("contract", drops=["t.b"]))]
    assert [(f.rule, f.severity) for f in warnings] == [("declared-drop-missing", "warning")]


def test_missing_lock_timeout():
    assert found("ALTER TABLE t ADD COLUMN c TEXT;") == ["missing-lock-timeout"]
    assert found("SET lock_timeout = 0;\nALTER TABLE t ADD COLUMN c TEXT;") == [
        "missing-lock-timeout"
    ]
    assert (
        found("SELECT set_config('lock_timeout', '2s', false); ALTER TABLE t ADD COLUMN c TEXT;")
        == []
    )
    # SET LOCAL ends with the transaction
    assert found(
        "BEGIN; SET LOCAL lock_timeout = '1s'; COMMIT;\nALTER TABLE t ADD COLUMN c TEXT;"
    ) == ["missing-lock-timeout"]
    # DML only: no DDL, no need
    assert found("INSERT INTO t VALUES (1);") == []


def test_update_or_delete_without_where():
    assert found(LT + "UPDATE t SET a = 1;", "migrate") == ["unbatched-dml"]
    assert found(LT + "DELETE FROM t;", "migrate") == ["unbatched-dml"]
    assert found(LT + "UPDATE t SET a = 1 WHERE id BETWEEN 1 AND 1000;", "migrate") == []


def test_data_change_in_expand():
    assert found(LT + "UPDATE t SET a = 1 WHERE id < 10;") == ["data-change-in-expand"]
    assert found(LT + "INSERT INTO t (a) VALUES (1);") == []


def test_keywords_inside_literals_and_comments_are_not_statements():
    sql = LT + (
        "INSERT INTO t (a) VALUES ('DROP TABLE x; ALTER TABLE y RENAME TO z');\n"
        "-- DROP TABLE t;\n/* CREATE INDEX i ON t (a); */\n"
        "DO $$ BEGIN RAISE NOTICE 'UPDATE t SET a = 1'; END $$;"
    )
    assert found(sql) == []


def test_alembic_version_statements_are_ignored():
    sql = (
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL);\n"
        "UPDATE alembic_version SET version_num='b';"
    )
    assert found(sql) == []


def test_new_table_is_noted_but_still_needs_a_waiver():
    sql = LT + "CREATE TABLE t (id int);\nCREATE INDEX ix ON t (id);"
    [f] = lint_sql(sql, info())
    assert f.rule == "create-index-not-concurrently"
    assert "created in this same revision" in f.message


# -- waivers ----------------------------------------------------------------------------------


def test_reasoned_waiver_silences_the_finding():
    sql = LT + "CREATE INDEX ix ON t (a);"
    out = lint_sql(sql, info(waivers={"create-index-not-concurrently": "t is new and empty"}))
    [f] = out
    assert f.waived == "t is new and empty" and not f.failing


def test_targeted_waiver_silences_only_its_target():
    sql = LT + "CREATE INDEX ix_a ON t (a);\nCREATE INDEX ix_b ON t (b);"
    out = lint_sql(sql, info(waivers={"create-index-not-concurrently:ix_a": "tiny table"}))
    assert {(f.target, f.waived is not None) for f in out} == {("ix_a", True), ("ix_b", False)}


def test_waiver_with_empty_reason_is_an_error_and_silences_nothing():
    sql = LT + "CREATE INDEX ix ON t (a);"
    out = lint_sql(sql, info(waivers={"create-index-not-concurrently": "   "}))
    assert sorted(f.rule for f in out if f.failing) == [
        "create-index-not-concurrently",
        "waiver-without-reason",
    ]


def test_unknown_and_unused_waivers():
    out = lint_sql(
        LT + "SELECT 1;", info(waivers={"no-such-rule": "x", "rename-table": "not needed"})
    )
    assert {(f.rule, f.severity) for f in out} == {
        ("unknown-waiver", "error"),
        ("unused-waiver", "warning"),
    }


# -- whole projects (offline rendering through Alembic's API) -------------------------------


def test_fixture_good_lints_clean(fixtures):
    project = AlembicProject(fixtures / "good")
    results = lint_project(project, read_plan(project))
    assert list(results) == ["0001", "0002", "0003", "0004"]
    assert [f for fs in results.values() for f in fs if f.failing] == []


def test_fixture_dangerous_is_caught(fixtures):
    project = AlembicProject(fixtures / "dangerous")
    results = lint_project(project, read_plan(project))
    assert [(f.rule, f.waived is not None) for f in results["0001"]] == [
        ("create-index-not-concurrently", True)
    ]
    assert {f.rule for f in results["0002"] if f.failing} == {
        "missing-lock-timeout",
        "create-index-not-concurrently",
        "add-column-not-null-without-default",
        "alter-column-type",
        "rename-column",
        "waiver-without-reason",
    }


def test_revision_that_cannot_render_offline_is_a_finding(project):
    root = project(
        [
            {
                "revision": "a1",
                "decl": 'phase = "expand"',
                "upgrade": 'if op.get_context().as_sql:\n    raise RuntimeError("online only")',
            }
        ]
    )
    proj = AlembicProject(root)
    [f] = lint_project(proj, read_plan(proj))["a1"]
    assert f.rule == "offline-render-failed"
    assert "online only" in f.message and "as_sql" in (f.fix or "")


@pytest.mark.parametrize("phase", ["expand", "migrate", "contract"])
def test_safe_expand_migrate_contract_statements_pass_in_every_phase(phase):
    sql = LT + (
        "ALTER TABLE t ADD COLUMN c TEXT;\n"
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY(c) REFERENCES p (id) NOT VALID;\n"
        "ALTER TABLE t VALIDATE CONSTRAINT fk;\n"
        "COMMIT;\nCREATE INDEX CONCURRENTLY ix ON t (c);\nBEGIN;\n"
    )
    assert found(sql, phase) == []


def test_validate_in_the_transaction_that_added_the_constraint():
    add = "ALTER TABLE t ADD CONSTRAINT ck CHECK (a > 0) NOT VALID;\n"
    validate = "ALTER TABLE t VALIDATE CONSTRAINT ck;\n"
    assert found("BEGIN;\n" + LT + add + validate + "COMMIT;") == ["validate-in-same-transaction"]
    assert found("BEGIN;\n" + LT + add + "COMMIT;\n" + validate) == []
