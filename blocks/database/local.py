"""A persistent local PostgreSQL cluster under the state folder: the demo's databases.

``delivery setup`` and ``delivery demo`` give each environment a cluster of its own
(``<state>/postgres/<environment>``): ``initdb`` once, ``pg_ctl start`` whenever the pipeline
needs it, ``pg_ctl stop`` on ``delivery down``. The data survives between runs.

PostgreSQL refuses to run as root, so as root the cluster runs as an unprivileged user
(``postgres`` unless ``MIGRATIONS_LAB_PG_USER`` says otherwise; the same rule and helpers as
migrations_lab's ephemeral clusters, in migrations_lab/pgtools.py). That user must
be able to reach the data folder: missing search (x) permission on a folder above it is granted
and said so.

Administration goes through the cluster's unix socket with ``trust`` for local connections
(only users of this machine that can open the socket folder reach it); TCP on 127.0.0.1 asks
for a password (scram-sha-256). No password is ever written to disk by this module: the
application role's password lives only in the ``PostgresDatabase`` block that holds its URL.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import stat
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy.engine import URL

from prefect_delivery.blocks.errors import ConfigError, InfrastructureError
from prefect_delivery.blocks.paths import atomic_write_json, free_port, pid_alive
from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.pgtools import PgTools, ToolTimeout, tail

SUPERUSER = "delivery"
SOCKET_PATH_MAX = 90  # unix socket paths must stay under 108 bytes (".s.PGSQL.<port>" added)


class ServerAdmin:
    """Administration SQL on a PostgreSQL server, through ``_admin()`` (a superuser
    connection, autocommit): the role and database an environment needs, a fresh start, one
    statement. The local cluster below administers itself so; a server the pipeline does not
    run (a team's own) is reached the same way over TCP."""

    def _admin(self, dbname: str = "postgres") -> Any:
        raise NotImplementedError

    def _tcp(self) -> tuple[str, int]:
        """Where applications reach the server: (host, port)."""
        raise NotImplementedError

    def url(self, name: str, role: str, password: str) -> SecretStr:
        """An application's URL for ``role`` on database ``name`` (over TCP, with password)."""
        host, port = self._tcp()
        url = URL.create(
            "postgresql+psycopg",
            username=role,
            password=password,
            host=host,
            port=port,
            database=name,
        )
        return SecretStr(url.render_as_string(hide_password=False))

    def ensure_database(self, name: str, role: str, password: str | None) -> None:
        """The role (with this password, when given) and its database, created if missing."""
        from psycopg import sql

        with self._admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            if password is not None:
                conn.execute(
                    sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                        sql.SQL(verb), sql.Identifier(role), sql.Literal(password)
                    )
                )
            elif not exists:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(role)
                    )
                )

    def reset_database(self, name: str, role: str) -> None:
        """Drop and re-create a database (closing its connections): a fresh start."""
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(role)
                )
            )

    def execute(self, dbname: str, statement: str) -> list[tuple]:
        """Run one statement as the superuser (tests and the demo's checks)."""
        with self._admin(dbname) as conn:
            cursor = conn.execute(statement)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []


class LocalCluster(ServerAdmin):
    """One PostgreSQL cluster in ``folder`` (data, log, settings)."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder).resolve()

    # ----------------------------------------------------------------- layout
    @property
    def datadir(self) -> Path:
        return self.folder / "data"

    @property
    def logfile(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def _record(self) -> Path:
        return self.folder / "cluster.json"

    @property
    def socket_dir(self) -> Path:
        if len(str(self.folder)) <= SOCKET_PATH_MAX:
            return self.folder
        digest = hashlib.sha256(str(self.folder).encode()).hexdigest()[:12]
        return Path("/tmp") / f"pd-pg-{digest}"

    def settings(self) -> dict[str, Any]:
        try:
            return json.loads(self._record.read_text())
        except (OSError, ValueError):
            return {}

    @property
    def port(self) -> int | None:
        value = self.settings().get("port")
        return int(value) if value else None

    @property
    def exists(self) -> bool:
        return (self.datadir / "PG_VERSION").is_file() and self.port is not None

    @property
    def pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def running(self) -> bool:
        pid = self.pid
        return pid is not None and pid_alive(pid)

    def describe(self) -> str:
        return f"local PostgreSQL in {self.folder} (127.0.0.1:{self.port or '?'})"

    # ----------------------------------------------------------------- processes
    def _tools(self) -> PgTools:
        try:
            return PgTools.find(self.folder, self.settings().get("bindir"))
        except LabConfigError as exc:
            raise ConfigError(exc.where, exc.problem, exc.fix) from None

    def _run(self, call, tools: PgTools) -> str:
        """One tool call (migrations_lab/pgtools.py); a failure says where to read more."""
        try:
            result = call(tools)
        except ToolTimeout as exc:
            raise InfrastructureError(f"{exc} for {self.describe()}; read {self.logfile}") from None
        if result.returncode != 0:
            tool = next((Path(a).name for a in result.args if str(tools.bindir) in a), "")
            output = tail(result.stderr or result.stdout, 5)
            raise InfrastructureError(
                f"{tool} failed for {self.describe()}: {output} {self._log_tail()}"
                f" (read {self.logfile})"
            )
        return result.stdout

    def _log_tail(self) -> str:
        try:
            return tail(self.logfile.read_text(errors="replace"), 5)
        except OSError:
            return ""

    # ----------------------------------------------------------------- lifecycle
    def init(self, port: int | None = None) -> bool:
        """Create the cluster unless it exists; True when it was created now."""
        if self.exists:
            return False
        tools = self._tools()
        if self.datadir.exists():  # a half-made cluster from an interrupted init
            shutil.rmtree(self.datadir)
        self.folder.mkdir(parents=True, exist_ok=True)
        sockets = self.socket_dir
        sockets.mkdir(parents=True, exist_ok=True)
        tools.give(*{self.folder, sockets})
        if tools.run_as:
            _grant_search(self.folder, pwd.getpwnam(tools.run_as))
        self._run(lambda t: t.initdb(self.datadir, SUPERUSER, 90), tools)
        chosen = port or free_port()
        conf = {
            "listen_addresses": "127.0.0.1",
            "port": str(chosen),
            "unix_socket_directories": str(sockets),
            "synchronous_commit": "off",
            "max_connections": "60",
            "unix_socket_permissions": "0700",  # admin over the socket: its owner (or root)
        }
        with (self.datadir / "postgresql.conf").open("a") as handle:
            handle.write("\n# prefect-delivery\n")
            handle.writelines(f"{k} = '{v}'\n" for k, v in conf.items())
        atomic_write_json(self._record, {"port": chosen, "bindir": str(tools.bindir)})
        return True

    def start(self, timeout_s: float = 30) -> None:
        """Start the server if it is not running (idempotent)."""
        if not self.exists:
            raise ConfigError(
                f"database cluster {self.folder}",
                "does not exist (no data folder).",
                "run `delivery setup` (or `delivery demo`) again to create it.",
            )
        if self.running:
            return
        tools = self._tools()
        if tools.run_as and not self.socket_dir.exists():  # /tmp was cleaned
            self.socket_dir.mkdir(parents=True)
            tools.give(self.socket_dir)
        stale = self.datadir / "postmaster.pid"
        if stale.exists() and not self.running:
            stale.unlink(missing_ok=True)
        self._run(lambda t: t.start(self.datadir, self.logfile, timeout_s), tools)

    def stop(self, timeout_s: float = 30) -> bool:
        """Stop the server if it runs; True when it was running."""
        if not self.exists or not self.running:
            return False
        tools = self._tools()
        try:
            self._run(lambda t: t.stop(self.datadir, timeout_s), tools)
        except InfrastructureError:
            pid = self.pid
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        return True

    # ----------------------------------------------------------------- databases
    def _admin(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )

    def _tcp(self) -> tuple[str, int]:
        if self.port is None:
            raise ConfigError(
                f"database cluster {self.folder}",
                "has no port recorded.",
                "run `delivery setup` again.",
            )
        return "127.0.0.1", self.port


def _grant_search(folder: Path, entry: pwd.struct_passwd) -> None:
    """Let ``entry``'s user traverse every folder above ``folder`` (search permission only)."""
    groups = {g for g in os.getgrouplist(entry.pw_name, entry.pw_gid)}
    for parent in reversed(folder.parents):
        st = parent.stat()
        if st.st_uid == entry.pw_uid:
            needed = stat.S_IXUSR
        elif st.st_gid in groups:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not st.st_mode & needed:
            os.chmod(parent, stat.S_IMODE(st.st_mode) | stat.S_IXOTH | stat.S_IXGRP)
            print(
                f"note: granted search permission (x) on {parent} so that PostgreSQL, running "
                f"as {entry.pw_name}, reaches its data folder"
            )
