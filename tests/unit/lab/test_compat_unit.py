"""Compat: suite execution (a real subprocess, no database) and which suite runs where."""

from __future__ import annotations

import sys

import pytest

from prefect_delivery.migrations_lab.compat import CompatConfig, plan_jobs, run_suite
from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.phases import PhasePlan, RevisionInfo

URL = "postgresql+psycopg://app:t0psecret@127.0.0.1:1/app"


def test_url_reaches_the_suite_only_through_the_environment():
    script = (
        "import os, sys; u = os.environ['DATABASE_URL']; print('argv', sys.argv[1:]); "
        "print('url', u); sys.exit(0 if u == os.environ['EXPECTED'] else 3)"
    )
    res = run_suite([sys.executable, "-c", script, "plain-arg"], URL, env={"EXPECTED": URL})
    assert res.passed and res.returncode == 0
    assert "argv ['plain-arg']" in res.output_tail
    assert "t0psecret" not in res.output_tail  # echoed URL is scrubbed
    assert "app:***@127.0.0.1" in res.output_tail


def test_failing_suite_returns_its_tail():
    script = "import sys\nfor i in range(100): print('line', i)\nsys.exit(1)"
    res = run_suite([sys.executable, "-c", script], URL, tail_lines=5)
    assert not res.passed and res.returncode == 1
    assert res.output_tail.splitlines() == [f"line {i}" for i in range(95, 100)]


def test_timeout_fails_the_suite():
    res = run_suite(
        [sys.executable, "-c", "import time; print('start', flush=True); time.sleep(30)"],
        URL,
        timeout_s=1,
    )
    assert not res.passed and res.timed_out and "timed out" in res.output_tail


def test_password_on_the_command_line_is_refused():
    with pytest.raises(LabConfigError, match="password"):
        run_suite(["echo", "t0psecret"], URL)
    with pytest.raises(LabConfigError, match="not found"):
        run_suite(["/no/such/binary"], URL)


def _plan(phases: list[tuple[str, str]]) -> PhasePlan:
    revs, down = [], None
    for n, (phase, release) in enumerate(phases, 1):
        revs.append(
            RevisionInfo(
                revision=f"r{n}", down_revision=down, path=f"r{n}.py", phase=phase, release=release
            )
        )
        down = f"r{n}"
    return PhasePlan(project="p", revisions=revs, heads=[down])


def test_jobs_old_code_on_new_schema_and_new_code_on_old_schema_for_expand():
    plan = _plan([("expand", "1"), ("expand", "2"), ("migrate", "3"), ("contract", "4")])
    config = CompatConfig(commands={r: ["suite", r] for r in ("1", "2", "3", "4")})
    jobs = [(j.suite_release, j.revision, j.direction) for j in plan_jobs(plan, config)]
    assert jobs == [
        ("1", "r2", "old-code-new-schema"),
        ("2", "r1", "new-code-old-schema"),  # release 2 is expand only
        ("2", "r3", "old-code-new-schema"),
        ("3", "r4", "old-code-new-schema"),
    ]


def test_commands_must_be_lists_of_strings():
    with pytest.raises(ValueError):
        CompatConfig(commands={"1": []})
