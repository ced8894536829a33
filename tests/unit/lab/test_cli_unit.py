"""CLI paths that need no database: bad input and plan-only runs."""

from __future__ import annotations

import json

from prefect_delivery.migrations_lab.cli import main


def test_missing_path_exits_2_with_a_clear_message(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Fix:" in err


def test_two_heads_fail_before_any_database_is_needed(fixtures, capsys):
    assert main(["check", str(fixtures / "two_heads"), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert [f["rule"] for f in data["findings"]] == ["multiple-heads"]


def test_plan_and_lint_only(fixtures, capsys):
    assert main(["check", str(fixtures / "good" / "alembic.ini"), "--no-roundtrip"]) == 0
    out = capsys.readouterr().out
    assert "result: PASS" in out and "round trip" not in out
    assert main(["check", str(fixtures / "dangerous"), "--no-roundtrip"]) == 1


def test_bad_compat_option_exits_2(fixtures, capsys):
    assert main(["check", str(fixtures / "good"), "--compat", "no-equals-sign"]) == 2
    assert "RELEASE=COMMAND" in capsys.readouterr().err
