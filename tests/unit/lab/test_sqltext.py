"""Statement splitting and literal masking."""

from prefect_delivery.migrations_lab.sqltext import (
    mask_literals,
    split_statements,
    split_top_level,
    unquote,
)


def test_split_respects_strings_dollar_quotes_and_comments():
    sql = (
        "SET a = 'x;y';\n-- a comment; with ;\nCREATE FUNCTION f() RETURNS int AS $body$\n"
        "BEGIN RETURN 1; END $body$ LANGUAGE plpgsql;\n/* block /* nested; */ ; */\n"
        "SELECT E'it\\'s;', \"odd;name\" FROM t;;"
    )
    assert split_statements(sql) == [
        "SET a = 'x;y'",
        "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END $body$ LANGUAGE plpgsql",
        "SELECT E'it\\'s;', \"odd;name\" FROM t",
    ]


def test_mask_literals_uppercases_code_and_hides_bodies():
    assert mask_literals("update t set a = 'drop table x' where \"Id\" = 1") == (
        "UPDATE T SET A = '' WHERE \"Id\" = 1"
    )


def test_unquote_and_top_level_split():
    assert unquote('"My Table"') == "My Table"
    assert unquote("public.Users") == "users"
    assert split_top_level("ADD COLUMN a numeric(10, 2), DROP COLUMN b") == [
        "ADD COLUMN a numeric(10, 2)",
        "DROP COLUMN b",
    ]
