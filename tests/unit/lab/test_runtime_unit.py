"""Pure logic of the runtime pieces: retry backoff, timeout options, error messages,
binary discovery and the backfill's input checks."""

from __future__ import annotations

import pytest

from prefect_delivery.migrations_lab import pgtools
from prefect_delivery.migrations_lab.apply import RetryPolicy
from prefect_delivery.migrations_lab.backfill import batched_backfill
from prefect_delivery.migrations_lab.connect import TimeoutSettings, describe_connect_error
from prefect_delivery.migrations_lab.errors import LabConfigError, PostgresNotFound


def test_retry_backoff_is_exponential_and_capped():
    policy = RetryPolicy(initial_delay_s=0.5, factor=2, max_delay_s=3, jitter=0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(initial_delay_s=1, jitter=0.1).delay(1)
    assert 0.9 <= jittered <= 1.1


def test_timeouts_default_and_libpq_options():
    s = TimeoutSettings()
    assert (s.lock_timeout_ms, s.statement_timeout_ms) == (2000, 60000)
    assert s.libpq_options() == "-c lock_timeout=2000 -c statement_timeout=60000"
    with pytest.raises(ValueError):
        TimeoutSettings(lock_timeout_ms=-1)


class _Orig(Exception):
    pass


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'connection to server at "h" failed: '
            'FATAL:  password authentication failed for user "u"',
            "password authentication failed",
        ),
        ('connection to server at "h", port 1 failed: Connection refused', "connection refused"),
        ('FATAL:  database "nope" does not exist', "does not exist"),
        ("timeout expired", "timed out"),
    ],
)
def test_connect_errors_are_classified_and_never_show_the_password(text, expected):
    url = "postgresql+psycopg://u:hunter2@h:1/d"
    err = describe_connect_error(_Orig(text + " hunter2"), url)
    assert expected in str(err)
    assert "hunter2" not in str(err)
    assert "u:***@h:1/d" in str(err) and "Fix:" in str(err)


def test_missing_binaries_say_which_package_to_install(monkeypatch):
    monkeypatch.setattr(pgtools.shutil, "which", lambda name: None)
    monkeypatch.setattr(pgtools.glob, "glob", lambda pattern: [])
    monkeypatch.delenv("MIGRATIONS_LAB_PG_BINDIR", raising=False)
    with pytest.raises(PostgresNotFound) as exc:
        pgtools.find_bindir("/nonexistent")
    assert "postgresql" in str(exc.value) and "apt-get install" in str(exc.value)
    assert "--provider docker" in str(exc.value)


def test_root_needs_an_existing_unprivileged_user(monkeypatch):
    monkeypatch.setattr(pgtools.os, "geteuid", lambda: 0)
    with pytest.raises(LabConfigError, match="does not exist") as exc:
        pgtools.unprivileged_user("no_such_user_xyz")
    assert "useradd" in str(exc.value)
    with pytest.raises(LabConfigError, match="is root"):
        pgtools.unprivileged_user("root")
    monkeypatch.setattr(pgtools.os, "geteuid", lambda: 1000)
    assert pgtools.unprivileged_user(None) is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"table": "users; DROP TABLE x"}, "plain identifier"),
        ({"key": "id)"}, "plain identifier"),
        ({"batch_size": 0}, ">= 1"),
        ({"pause_s": -1}, ">= 0"),
    ],
)
def test_backfill_refuses_bad_input(kwargs, match):
    args = {"table": "users", "key": "id", "batch_size": 10, "pause_s": 0.0} | kwargs
    with pytest.raises(LabConfigError, match=match):
        batched_backfill(
            lambda: None,
            args["table"],
            args["key"],
            "a = 1",  # type: ignore
            args["batch_size"],
            args["pause_s"],
        )
