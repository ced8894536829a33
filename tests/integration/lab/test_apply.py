"""Safe apply against a real database: one revision at a time, timeouts, retries,
verification, and clear errors that never leak the password."""

from __future__ import annotations

import io
import shutil
import threading
import time

import psycopg
import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from prefect_delivery.migrations_lab import (
    DatabaseUnavailable,
    LabConfigError,
    MigrationFailed,
    RetryPolicy,
    Runner,
    TimeoutSettings,
    apply_pending,
    apply_timeouts,
    batched_backfill,
    current_revision,
    downgrade,
    pending_revisions,
)
from prefect_delivery.migrations_lab.postgres import free_port
from prefect_delivery.migrations_lab.project import AlembicProject
from prefect_delivery.migrations_lab.sqltext import split_statements
from prefect_delivery.migrations_lab.urls import reveal

pytestmark = pytest.mark.postgres


def engine_for(db):
    return create_engine(db.url.get_secret_value())


def columns(db, table):
    engine = engine_for(db)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            return [c["name"] for c in insp.get_columns(table)] if insp.has_table(table) else None
    finally:
        engine.dispose()


def test_apply_pending_one_revision_at_a_time(db, fixtures):
    project = fixtures / "good"
    assert pending_revisions(project, db.url) == ["0001", "0002", "0003", "0004"]
    first = apply_pending(project, db.url, target="0002")
    assert [(s.revision, s.from_revision, s.to_revision) for s in first.steps] == [
        ("0001", None, "0001"), ("0002", "0001", "0002")]
    assert current_revision(db.url) == "0002"
    rest = apply_pending(project, db.url.get_secret_value())  # str works as well as SecretStr
    assert [s.revision for s in rest.steps] == ["0003", "0004"]
    assert (rest.from_revision, rest.to_revision) == ("0002", "0004")
    assert apply_pending(project, db.url).steps == []
    assert columns(db, "users") == ["id", "created_at", "full_name"]


def test_downgrade_steps_back_and_refuses_targets_above(db, fixtures):
    project = fixtures / "good"
    apply_pending(project, db.url)
    result = downgrade(project, db.url, "0002")
    assert [s.revision for s in result.steps] == ["0004", "0003"]
    assert current_revision(db.url) == "0002"
    with pytest.raises(LabConfigError, match="not below the current revision"):
        downgrade(project, db.url, "0004")
    with pytest.raises(LabConfigError, match="not below target"):
        apply_pending(project, db.url, target="0001")


def test_failed_revision_leaves_the_previous_revision(db, fixtures):
    with pytest.raises(MigrationFailed) as exc:
        apply_pending(fixtures / "halfway", db.url)
    err = exc.value
    assert err.revision == "0002" and err.at_revision == "0001"
    assert "versions/0002_fails_halfway.py" in str(err)
    assert "no_such_table" in str(err) and "42P01" in str(err)
    assert current_revision(db.url) == "0001"
    assert columns(db, "audit") is None  # created before the failure, rolled back
    assert columns(db, "items") == ["id", "label"]  # the added column is rolled back too


def test_wrong_password_gives_a_clear_message_without_the_password(db, fixtures):
    wrong = reveal(db.url).set(password="Wr0ngPassw0rd").render_as_string(hide_password=False)
    for call in (lambda: current_revision(wrong), lambda: apply_pending(fixtures / "good", wrong)):
        with pytest.raises(DatabaseUnavailable) as exc:
            call()
        text_ = str(exc.value)
        assert "password authentication failed" in text_
        assert "Wr0ngPassw0rd" not in text_ and "lab:***@127.0.0.1" in text_
        assert "Fix:" in text_
        assert exc.value.__cause__ is None or "Wr0ngPassw0rd" not in str(exc.value.__cause__)


def test_database_down_gives_a_clear_message_without_the_password(fixtures):
    url = f"postgresql+psycopg://app:Sup3rSecret@127.0.0.1:{free_port()}/app"
    with pytest.raises(DatabaseUnavailable) as exc:
        apply_pending(fixtures / "good", url)
    assert "connection refused" in str(exc.value)
    assert "Sup3rSecret" not in str(exc.value) and "app:***@" in str(exc.value)


def test_runner_connections_carry_the_timeouts(db, fixtures):
    with Runner(fixtures / "good", db.url,
                timeouts=TimeoutSettings(lock_timeout_ms=250, statement_timeout_ms=7000)) as r:
        with r.engine.connect() as conn:
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "250ms"
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "7s"


def test_apply_timeouts_for_env_py(db):
    engine = engine_for(db)
    with engine.connect() as conn:
        apply_timeouts(conn)
        assert not conn.in_transaction()
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "2s"
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "1min"
    engine.dispose()


def _hold_lock(db, table: str, seconds: float, ready: threading.Event) -> threading.Thread:
    def hold() -> None:
        engine = engine_for(db)
        with engine.connect() as conn:
            conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            ready.set()
            time.sleep(seconds)
            conn.rollback()
        engine.dispose()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert ready.wait(10)
    return thread


def _without_revision_lock_timeout(fixtures, tmp_path):
    """The good project minus the revisions' own SET lock_timeout, so the runner's applies."""
    project = shutil.copytree(fixtures / "good", tmp_path / "good")
    for path in (project / "versions").glob("*.py"):
        path.write_text(path.read_text().replace(
            "    op.execute(\"SET lock_timeout = '2s'\")\n", ""))
    return project


def test_lock_timeout_is_retried_with_backoff(db, fixtures, tmp_path):
    project = _without_revision_lock_timeout(fixtures, tmp_path)
    apply_pending(project, db.url, target="0001")
    ready = threading.Event()
    holder = _hold_lock(db, "users", 1.0, ready)
    result = apply_pending(project, db.url, target="0002",
                           timeouts=TimeoutSettings(lock_timeout_ms=200),
                           retry=RetryPolicy(attempts=6, initial_delay_s=0.2, jitter=0))
    holder.join()
    [step] = result.steps
    assert step.attempts > 1
    assert current_revision(db.url) == "0002"


def test_lock_timeout_gives_up_and_leaves_the_previous_revision(db, fixtures, tmp_path):
    project = _without_revision_lock_timeout(fixtures, tmp_path)
    apply_pending(project, db.url, target="0001")
    ready = threading.Event()
    holder = _hold_lock(db, "users", 3.0, ready)
    with pytest.raises(MigrationFailed) as exc:
        apply_pending(project, db.url, target="0002",
                      timeouts=TimeoutSettings(lock_timeout_ms=100),
                      retry=RetryPolicy(attempts=2, initial_delay_s=0.1, jitter=0))
    holder.join()
    assert exc.value.sqlstate == "55P03" and exc.value.at_revision == "0001"
    assert "after 2 attempts" in str(exc.value) and "pg_locks" in str(exc.value)
    assert current_revision(db.url) == "0001"


def test_batched_backfill_in_keyset_batches(db):
    engine = engine_for(db)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id bigint PRIMARY KEY, a int, b int)"))
        conn.execute(text("INSERT INTO t SELECT g, g, NULL FROM generate_series(1, 1050) g"))
    seen = []
    result = batched_backfill(lambda: engine, "t", "id", "b = a * 2", batch_size=100,
                              pause_s=0.0, where="b IS NULL",
                              progress=lambda n, rows: seen.append(rows))
    assert (result.rows, result.batches) == (1050, 11) and seen[-1] == 1050
    assert result.rows_per_s > 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t WHERE b = a * 2")).scalar() == 1050
        conn.rollback()
        # a Connection outside a transaction: each batch in its own transaction
        again = batched_backfill(lambda: conn, "t", "id", "b = 0", batch_size=500)
        assert again.batches == 3 and not conn.in_transaction()
        conn.execute(text("SELECT 1"))
        with pytest.raises(LabConfigError, match="autocommit_block"):
            batched_backfill(lambda: conn, "t", "id", "b = 1", batch_size=500)
        conn.rollback()
    engine.dispose()


def test_offline_sql_runs_and_matches_online(pg_cluster, fixtures):
    """The SQL the linter reads (offline, incl. the backfill's DO block) is runnable."""
    project = AlembicProject(fixtures / "good")
    buffer = io.StringIO()
    command.upgrade(project.config(buffer=buffer), "head", sql=True)
    with pg_cluster.database() as offline, pg_cluster.database() as online:
        conninfo = offline.url.get_secret_value().replace("+psycopg", "")
        with psycopg.connect(conninfo, autocommit=True) as conn:  # as psql would run it
            for stmt in split_statements(buffer.getvalue()):
                if stmt.startswith("DO $migrations_lab$"):  # the backfill: give it rows
                    conn.execute("INSERT INTO users (name) SELECT 'n' || g "
                                 "FROM generate_series(1, 5) g")
                conn.execute(stmt)  # type: ignore[arg-type]
            filled = conn.execute("SELECT count(*) FROM users WHERE full_name LIKE 'n%'")
            assert filled.fetchone() == (5,)
        apply_pending(project, online.url)
        assert current_revision(offline.url) == current_revision(online.url) == "0004"
        assert columns(offline, "users") == columns(online, "users")
