"""Ephemeral PostgreSQL: a throwaway cluster per lab run, a clean database per check.

``LocalPostgres`` runs ``initdb`` + ``pg_ctl`` into a temp dir on a free loopback port
(fsync off, listening on 127.0.0.1 only, unix socket inside the temp dir). PostgreSQL refuses
to run as root, so when the lab runs as root the cluster runs as an unprivileged user
(``postgres`` unless ``run_as=`` or ``MIGRATIONS_LAB_PG_USER`` says otherwise) through
``runuser -u USER --`` (or ``subprocess`` ``user=``/``group=`` when runuser is missing).

Every cluster holds an empty template database; :meth:`PostgresCluster.database` copies it
with ``CREATE DATABASE ... TEMPLATE`` (tens of milliseconds) and drops the copy afterwards.
Clusters are context managers and are also stopped at interpreter exit (atexit), so an
exception never leaves a server or a temp dir behind.

The superuser password is random per cluster and only ever shown masked.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict, SecretStr
from sqlalchemy.engine import URL

from prefect_delivery.migrations_lab.errors import LabConfigError, PostgresStartError
from prefect_delivery.migrations_lab.pgtools import (  # noqa: F401 - re-exported
    PgTools,
    ToolTimeout,
    as_user,
    find_bindir,
    free_port,
    tail,
    unprivileged_user,
)
from prefect_delivery.migrations_lab.urls import mask

SUPERUSER = "lab"
TEMPLATE_DB = "lab_template"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

#: Settings for a throwaway cluster: fast, loopback only.
FAST_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
}


class Database(BaseModel):
    """One database on an ephemeral cluster."""

    model_config = ConfigDict(frozen=True)

    name: str
    url: SecretStr

    @property
    def masked_url(self) -> str:
        return mask(self.url)


class PostgresCluster(ABC):
    """A started PostgreSQL server the lab owns; subclasses say how it runs."""

    kind: str = "abstract"

    def __init__(self) -> None:
        self._password = secrets.token_urlsafe(18)
        self.port: int | None = None
        self.server_version_num = 0
        self._running = False
        self._lock = threading.Lock()

    # -- lifecycle, provided by subclasses ---------------------------------------------
    @abstractmethod
    def _start_server(self) -> None:
        """Start the server on 127.0.0.1:self.port with superuser ``lab``."""

    @abstractmethod
    def _stop_server(self) -> None:
        """Stop the server and remove everything it left behind. Must be idempotent."""

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> PostgresCluster:
        with self._lock:
            if self._running:
                return self
            _LIVE.add(self)
            try:
                self._start_server()
                self._running = True
                self._wait_ready()
                self._admin_execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
                self.server_version_num = self._server_version_num()
            except BaseException:
                self._stop_locked()
                raise
        return self

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._running or self in _LIVE:
            # if this is interrupted the cluster stays registered and atexit finishes the job
            self._stop_server()
        self._running = False
        _LIVE.discard(self)

    @property
    def running(self) -> bool:
        return self._running

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- URLs ----------------------------------------------------------------------------
    def url_for(self, dbname: str) -> SecretStr:
        if self.port is None:
            raise PostgresStartError(f"{self.kind} cluster", "is not started.", "call start()")
        url = URL.create(
            "postgresql+psycopg",
            username=SUPERUSER,
            password=self._password,
            host="127.0.0.1",
            port=self.port,
            database=dbname,
        )
        return SecretStr(url.render_as_string(hide_password=False))

    @property
    def admin_url(self) -> SecretStr:
        return self.url_for("postgres")

    def _conninfo(self, dbname: str = "postgres") -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": SUPERUSER,
            "password": self._password,
            "dbname": dbname,
            "connect_timeout": 5,
        }

    def _admin_execute(self, sql: str) -> None:
        with psycopg.connect(**self._conninfo(), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def _server_version_num(self) -> int:
        with psycopg.connect(**self._conninfo(), autocommit=True) as conn:
            row = conn.execute("SHOW server_version_num").fetchone()
        return int(row[0]) if row else 0

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(**self._conninfo(), autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                self._check_alive()
                time.sleep(0.1)
        raise PostgresStartError(
            f"{self.kind} cluster on 127.0.0.1:{self.port}",
            f"did not accept connections within {timeout_s:.0f}s ({last}).",
            self._log_hint(),
        )

    def _check_alive(self) -> None:  # noqa: B027 - optional hook, default: nothing to check
        """Raise if the server died while we wait for it (subclasses override)."""

    def _log_hint(self) -> str:
        return "look at the server log"

    # -- databases -----------------------------------------------------------------------
    def create_database(self, name: str | None = None) -> Database:
        """Copy the template into a new database (well under a second)."""
        name = name or f"lab_{secrets.token_hex(6)}"
        if not _DB_NAME.match(name):
            raise LabConfigError(
                f"database name {name!r}",
                "is not a plain lower-case identifier.",
                "use letters, digits and underscores, starting with a letter",
            )
        # FILE_COPY is the faster strategy for a tiny template (PostgreSQL 15+).
        strategy = " STRATEGY FILE_COPY" if self.server_version_num >= 150000 else ""
        self._admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"{strategy}')
        return Database(name=name, url=self.url_for(name))

    def drop_database(self, name: str) -> None:
        if not _DB_NAME.match(name) or name == TEMPLATE_DB:
            raise LabConfigError(f"database name {name!r}", "cannot be dropped by the lab.")
        if self._running:
            self._admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextlib.contextmanager
    def database(self, name: str | None = None) -> Iterator[Database]:
        """A fresh copy of the template, dropped on exit."""
        db = self.create_database(name)
        try:
            yield db
        finally:
            self.drop_database(db.name)


# -- local binaries: migrations_lab/pgtools.py ---------------------------------------------


class LocalPostgres(PostgresCluster):
    """A cluster from the local PostgreSQL binaries in a temp dir."""

    kind = "local"

    def __init__(
        self,
        *,
        bindir: str | os.PathLike[str] | None = None,
        run_as: str | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        settings: dict[str, str] | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        super().__init__()
        self._bindir_arg = bindir
        self._run_as_arg = run_as
        self._base_dir = base_dir
        self._settings = {**FAST_SETTINGS, **(settings or {})}
        self._start_timeout_s = start_timeout_s
        self.tempdir: Path | None = None
        self.tools: PgTools | None = None
        self.bindir: Path | None = None
        self.run_as: str | None = None

    @property
    def datadir(self) -> Path | None:
        return self.tempdir / "data" if self.tempdir else None

    @property
    def logfile(self) -> Path | None:
        return self.tempdir / "postgres.log" if self.tempdir else None

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        pidfile = self.datadir / "postmaster.pid" if self.datadir else None
        try:
            return int(pidfile.read_text().split()[0]) if pidfile else None
        except (OSError, ValueError, IndexError):
            return None

    def _log_hint(self) -> str:
        return f"read the server log {self.logfile}"

    def _start_server(self) -> None:
        self.tempdir = Path(tempfile.mkdtemp(prefix="migrations-lab-", dir=self._base_dir))
        self.tools = PgTools.find(self.tempdir, self._bindir_arg, self._run_as_arg)
        self.bindir, self.run_as = self.tools.bindir, self.tools.run_as
        self.tools.give(self.tempdir)
        self._initdb()
        for _attempt in range(5):
            self.port = free_port()
            result = self._run(
                lambda t: t.start(self.datadir, self.logfile, self._start_timeout_s, self.port)
            )
            if result.returncode == 0:
                return
            log = self._log_tail()
            if "could not bind" not in log and "already in use" not in log:
                break
        raise PostgresStartError(
            f"local cluster in {self.tempdir}",
            f"pg_ctl start failed: {tail(result.stderr or result.stdout)} {log}".strip(),
            "check the binaries and that the temp dir is writable by "
            f"{self.run_as or 'the current user'}",
        )

    def _initdb(self) -> None:
        assert self.tempdir is not None and self.tools is not None
        pwfile = self.tempdir / "pwfile"
        pwfile.write_text(self._password + "\n")
        os.chmod(pwfile, 0o600)
        self.tools.give(pwfile)
        timeout_s = self._start_timeout_s + 30
        try:
            result = self._run(lambda t: t.initdb(self.datadir, SUPERUSER, timeout_s, pwfile))
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PostgresStartError(
                f"initdb in {self.tempdir}",
                f"failed: {tail(result.stderr or result.stdout)}",
                f"make sure {self.run_as or 'the current user'} can write to the temp dir "
                "(set base_dir= or TMPDIR)",
            )
        conf = self.datadir / "postgresql.conf"  # type: ignore[operator]
        lines = [f"{k} = '{v}'" for k, v in self._settings.items()]
        lines.append(f"unix_socket_directories = '{self.tempdir}'")
        with conf.open("a") as fh:
            fh.write("\n# migrations_lab\n" + "\n".join(lines) + "\n")

    def _run(self, call) -> subprocess.CompletedProcess[str]:
        """One tool call on ``self.tools``; a timeout says where to look."""
        try:
            return call(self.tools)
        except ToolTimeout as exc:
            raise PostgresStartError(
                f"local cluster in {self.tempdir}", f"{exc}.", f"read the server log {self.logfile}"
            ) from None

    def _check_alive(self) -> None:
        if self.pid is None:
            raise PostgresStartError(
                f"local cluster in {self.tempdir}",
                f"the server exited while starting: {self._log_tail()}",
                self._log_hint(),
            )

    def _log_tail(self) -> str:
        try:
            return tail(self.logfile.read_text(errors="replace")) if self.logfile else ""
        except OSError:
            return ""

    def _stop_server(self) -> None:
        try:
            if self.tools and self.datadir and (self.datadir / "postmaster.pid").exists():
                pid = self.pid
                with contextlib.suppress(subprocess.SubprocessError, OSError, ToolTimeout):
                    self.tools.stop(self.datadir, 20, mode="immediate")
                if pid and _alive(pid) and self.datadir.exists():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
        finally:
            for _ in range(3):
                if not self.tempdir or not self.tempdir.exists():
                    break
                shutil.rmtree(self.tempdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- safety net and provider choice -------------------------------------------------------

_LIVE: set[PostgresCluster] = set()


@atexit.register
def _stop_all() -> None:
    for cluster in list(_LIVE):
        with contextlib.suppress(Exception):
            cluster.stop()


Provider = Literal["local", "docker"]


def make_cluster(provider: Provider = "local", **options: Any) -> PostgresCluster:
    """A not-yet-started cluster: ``local`` (binaries) or ``docker`` (docker-py)."""
    if provider == "local":
        return LocalPostgres(**options)
    if provider == "docker":
        from prefect_delivery.migrations_lab.postgres_docker import DockerPostgres

        return DockerPostgres(**options)
    raise LabConfigError(
        f"provider {provider!r}", "is not a known PostgreSQL provider.", "use local or docker"
    )


@contextlib.contextmanager
def ephemeral_postgres(provider: Provider = "local", **options: Any) -> Iterator[PostgresCluster]:
    """Start a throwaway cluster, yield it, always tear it down."""
    cluster = make_cluster(provider, **options)
    with cluster:
        yield cluster
