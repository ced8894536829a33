"""Bad input through the pipeline, on real PostgreSQL, HAProxy and processes: a revision with
no phase, a broken downgrade, a migration that fails half way on the real database, a history
with two heads, a database that is down, a wrong password. Each: a message naming the revision
(or the database) and the fix; the schema stays at the previous revision; the live release
keeps serving."""

from __future__ import annotations

import shutil
import textwrap

import pytest
from support.migration import (
    columns,
    commit_extra_revisions,
    make_db_environment,
    revision,
    update_database,
)
from support.pipeline import deliver, served_version, stop_environment

from prefect_delivery.blocks.errors import ConfigError, GateFailed, InfrastructureError

pytestmark = pytest.mark.postgres


HEADER = """
    import sqlalchemy as sa
    from alembic import op
"""


def rev(name: str, doc: str, body: str) -> dict[str, str]:
    """A revision file: its docstring, the imports, then ``body`` (indented by 4)."""
    return {name: f'"""{doc}"""\n' + textwrap.dedent(HEADER + body)}


NO_PHASE = rev(
    "0005_add_email.py",
    "Add people.email (forgets its phase).",
    """
    revision = "0005"
    down_revision = "0004"
    release = "5"


    def upgrade() -> None:
        op.execute("SET lock_timeout = '2s'")
        op.add_column("people", sa.Column("email", sa.Text, nullable=True))


    def downgrade() -> None:
        op.drop_column("people", "email")
""",
)

BROKEN_DOWNGRADE = rev(
    "0005_add_email.py",
    "Add people.email; bad downgrade.",
    """
    revision = "0005"
    down_revision = "0004"
    phase = "expand"
    release = "5"


    def upgrade() -> None:
        op.execute("SET lock_timeout = '2s'")
        op.add_column("people", sa.Column("email", sa.Text, nullable=True))


    def downgrade() -> None:
        op.drop_column("people", "emial")
""",
)

HALFWAY = rev(
    "0005_email_and_audit.py",
    "Add people.email and people_audit.",
    """
    revision = "0005"
    down_revision = "0004"
    phase = "expand"
    release = "5"


    def upgrade() -> None:
        op.execute("SET lock_timeout = '2s'")
        op.add_column("people", sa.Column("email", sa.Text, nullable=True))
        op.create_table("people_audit", sa.Column("id", sa.BigInteger, primary_key=True))


    def downgrade() -> None:
        op.drop_table("people_audit")
        op.drop_column("people", "email")
""",
)


def branch(letter: str, column: str) -> dict[str, str]:
    return rev(
        f"0005{letter}_add_{column}.py",
        f"Add people.{column}.",
        f'''
    revision = "0005{letter}"
    down_revision = "0004"
    phase = "expand"
    release = "5"


    def upgrade() -> None:
        op.execute("SET lock_timeout = '2s'")
        op.add_column("people", sa.Column("{column}", sa.Text, nullable=True))


    def downgrade() -> None:
        op.drop_column("people", "{column}")
''',
    )


@pytest.fixture(scope="module")
def live(state_dir, cluster, schema_repo, store):
    """One environment serving release 4 (schema at 0004) for every case of the module. Its
    database block names no local cluster: the pipeline must not start a server it was told
    is someone else's (so "down" stays down)."""
    repo, commits = schema_repo
    env = update_database(make_db_environment(state_dir, cluster, "mbad"), local_cluster=None)
    summary, error = deliver(repo, commits[4], [env], store)
    assert error is None, summary.text()
    yield repo, commits, env
    stop_environment(env)


def still_live(cluster, env) -> None:
    assert revision(cluster, env) == "0004"
    assert "email" not in columns(cluster, env)
    assert served_version(env)["version"] == "1.3.0"


def test_revision_without_a_phase(live, cluster, store):
    repo, _, env = live
    sha = commit_extra_revisions(repo, NO_PHASE, "1.4.0")
    summary, error = deliver(repo, sha, [env], store)
    assert isinstance(error.__cause__, GateFailed)
    assert error.__cause__.gate == "migration rehearsal"
    text = str(error)
    assert "revision 0005 (versions/0005_add_email.py) declares no phase" in text
    assert 'add the line `phase = "expand"` to versions/0005_add_email.py' in text
    assert f"nothing was applied to {env.name}'s database" in text
    still_live(cluster, env)


def test_broken_downgrade(live, cluster, store):
    repo, _, env = live
    sha = commit_extra_revisions(repo, BROKEN_DOWNGRADE, "1.4.1")
    summary, error = deliver(repo, sha, [env], store)
    assert error.__cause__.gate == "migration rehearsal"
    text = str(error)
    assert "revision 0005 (versions/0005_add_email.py" in text
    assert "downgrade failed" in text and "emial" in text
    assert "Fix: fix the revision's downgrade() and run again" in text
    still_live(cluster, env)


def test_migration_that_fails_half_way_on_the_real_database(live, cluster, store):
    """The lab passes it (a fresh database); production has a table someone made by hand, so
    the revision fails after its first statement. PostgreSQL rolls the revision back: the
    schema stays at 0004 (verified), and the code of the new release is not deployed."""
    from support.migration import db_name

    repo, _, env = live
    cluster.execute(db_name(env), "CREATE TABLE people_audit (id bigint)")
    try:
        sha = commit_extra_revisions(repo, HALFWAY, "1.4.2")
        summary, error = deliver(repo, sha, [env], store)
        assert isinstance(error.__cause__, GateFailed) and error.__cause__.gate == "migration"
        text = str(error)
        assert "revision 0005 (versions/0005_email_and_audit.py:" in text
        assert "upgrade failed [SQLSTATE 42P07]" in text and "people_audit" in text
        assert "The database is at revision 0004 (verified)" in text
        assert "the live release keeps serving" in text
        stages = {s.stage: s.result for s in summary.stages}
        assert stages[f"migrate {env.name}"] == "failed" and env.name not in stages
        entry = env.ledger().last("migrated")
        assert entry.details["status"] == "failed" and entry.details["to_revision"] == "0004"
        still_live(cluster, env)  # the ADD COLUMN before the failure was rolled back too
    finally:
        cluster.execute(db_name(env), "DROP TABLE people_audit")


def test_history_with_two_heads(live, cluster, store):
    repo, _, env = live
    sha = commit_extra_revisions(repo, branch("a", "email") | branch("b", "phone"), "1.4.3")
    summary, error = deliver(repo, sha, [env], store)
    assert error.__cause__.gate == "migration plan"
    text = str(error)
    assert "the history has 2 heads" in text
    assert "0005a (versions/0005a_add_email.py)" in text
    assert "0005b (versions/0005b_add_phone.py)" in text
    assert "Fix: rebase: set down_revision of one head" in text
    still_live(cluster, env)


def test_database_that_is_down(live, cluster, store):
    repo, commits, env = live
    cluster.stop()
    try:
        summary, error = deliver(repo, commits[4], [env], store)
        assert isinstance(error.__cause__, InfrastructureError)  # retried, then reported
        text = str(error)
        assert f"database of {env.name} (postgresql+psycopg://" in text
        assert "nothing accepts connections there (connection refused)" in text
        assert "Fix: start the database or fix host/port" in text
        # the live release keeps serving (its people endpoint waits for the database)
        assert served_version(env)["version"] == "1.3.0"
    finally:
        cluster.start()
    still_live(cluster, env)


def test_wrong_password(live, cluster, store):
    from sqlalchemy.engine import make_url

    repo, commits, env = live
    right = env.database.url.get_secret_value()
    wrong = make_url(right).set(password="not-the-password")
    update_database(env, url=wrong.render_as_string(hide_password=False))
    try:
        summary, error = deliver(repo, commits[4], [env], store)
        assert isinstance(error.__cause__, ConfigError)  # bad input: not retried
        text = str(error)
        assert "password authentication failed" in text
        assert "Fix: check the url (user, password, database name)" in text
        assert "not-the-password" not in text and "not-the-password" not in summary.text()
    finally:
        update_database(env, url=right)
    still_live(cluster, env)


def test_no_postgres_binaries_means_a_clear_setup_error(tmp_path, monkeypatch):
    """`delivery setup` on a machine without the server binaries: the fix, not a traceback."""
    from prefect_delivery.flows.cli.setup import local_database

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("MIGRATIONS_LAB_PG_BINDIR", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    import glob

    monkeypatch.setattr(glob, "glob", lambda *a, **k: [])
    with pytest.raises(ConfigError) as info:
        local_database(str(tmp_path), "staging")
    assert "apt-get install postgresql" in str(info.value)
    assert "--no-database" in str(info.value)
