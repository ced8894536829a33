"""The ephemeral cluster: starts, serves on loopback only, copies templates, always cleans up."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, inspect, text

from prefect_delivery.migrations_lab.postgres import LocalPostgres

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[3]


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


def test_session_cluster_serves_on_loopback_only(pg_cluster, db):
    engine = create_engine(db.url.get_secret_value())
    with engine.connect() as conn:
        assert conn.execute(text("SHOW listen_addresses")).scalar() == "127.0.0.1"
        assert conn.execute(text("SHOW fsync")).scalar() == "off"
        sockdir = conn.execute(text("SHOW unix_socket_directories")).scalar()
        assert sockdir == str(pg_cluster.tempdir)
    engine.dispose()
    assert "***" in db.masked_url and pg_cluster._password not in db.masked_url
    if os.geteuid() == 0:
        owner = Path(f"/proc/{pg_cluster.pid}").stat().st_uid
        assert pwd.getpwuid(owner).pw_name == pg_cluster.run_as != "root"


def test_cluster_starts_stops_and_cleans_up():
    cluster = LocalPostgres()
    with cluster:
        tempdir, port, pid = cluster.tempdir, cluster.port, cluster.pid
        assert tempdir.is_dir() and _accepts(port) and pid and _alive(pid)
    assert not tempdir.exists()
    assert not _accepts(port)
    assert not _alive(pid)
    assert not cluster.running


def test_cluster_cleans_up_even_on_exception():
    cluster = LocalPostgres()
    with pytest.raises(RuntimeError, match="boom"):
        with cluster:
            tempdir, port, pid = cluster.tempdir, cluster.port, cluster.pid
            raise RuntimeError("boom")
    assert not tempdir.exists() and not _accepts(port) and not _alive(pid)


def test_atexit_tears_down_a_cluster_nobody_stopped():
    code = (
        "import json, sys\n"
        "from prefect_delivery.migrations_lab.postgres import LocalPostgres\n"
        "pg = LocalPostgres().start()\n"
        "print(json.dumps({'dir': str(pg.tempdir), 'port': pg.port, 'pid': pg.pid}))\n"
        "sys.exit(3)  # no stop(): atexit must do it\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    deadline = time.monotonic() + 10
    while _alive(info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(info["dir"]).exists()
    assert not _accepts(info["port"])
    assert not _alive(info["pid"])


def test_template_copies_are_fast_and_isolated(pg_cluster):
    timings = []
    with pg_cluster.database() as first:
        with psycopg.connect(first.url.get_secret_value().replace("+psycopg", "")) as conn:
            conn.execute("CREATE TABLE only_here (id int)")
        for _ in range(5):
            started = time.perf_counter()
            with pg_cluster.database() as copy:
                timings.append(time.perf_counter() - started)
                engine = create_engine(copy.url.get_secret_value())
                with engine.connect() as conn:
                    assert inspect(conn).get_table_names() == []
                engine.dispose()
    print(f"\ntemplate copy: {', '.join(f'{t * 1000:.0f} ms' for t in timings)}")
    assert len(timings) == 5


def test_dropped_databases_are_gone(pg_cluster):
    with pg_cluster.database() as copy:
        name = copy.name
    with psycopg.connect(pg_cluster.admin_url.get_secret_value().replace("+psycopg", "")) as c:
        names = [r[0] for r in c.execute("SELECT datname FROM pg_database")]
    assert name not in names and "lab_template" in names


def test_sigterm_to_the_cli_still_tears_the_cluster_down(request):
    import signal

    # a temp dir of its own (sticky and world-writable like /tmp, for the cluster's user): in a
    # parallel run other tests' clusters come and go in /tmp, and would count as this one's
    base = Path(tempfile.mkdtemp(prefix="pd-sigterm-", dir="/tmp"))
    base.chmod(0o1777)
    request.addfinalizer(lambda: shutil.rmtree(base, ignore_errors=True))
    before = set(base.glob("migrations-lab-*"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrations_lab", "check",
         str(ROOT / "tests" / "fixtures" / "alembic" / "good")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, TMPDIR=str(base)),
    )
    deadline = time.monotonic() + 60
    new: set[Path] = set()
    while not new and time.monotonic() < deadline and proc.poll() is None:
        # postgres.log appears with pg_ctl start, after initdb (whose bootstrap backend
        # also writes a postmaster.pid)
        new = {p for p in set(base.glob("migrations-lab-*")) - before
               if (p / "postgres.log").exists() and (p / "data" / "postmaster.pid").exists()}
        time.sleep(0.02)
    assert new, "the CLI never started its cluster"
    pids = [int((p / "data" / "postmaster.pid").read_text().split()[0]) for p in new]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert not any(p.exists() for p in new)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)
