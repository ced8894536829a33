"""PostgreSQL's server tools (initdb, pg_ctl), run as an unprivileged user: the one place.

Two kinds of cluster use them: the lab's ephemeral clusters (``postgres.LocalPostgres``, a temp
dir per run) and the demo's persistent ones (``blocks/database/local.LocalCluster``, a folder
per environment). Both need the same things, written here once:

- where the binaries are (:func:`find_bindir`);
- who runs them: PostgreSQL refuses to run as root, so as root they run as ``postgres`` (or
  ``MIGRATIONS_LAB_PG_USER``) through ``runuser -u USER --``, or ``subprocess``'s
  ``user=``/``group=`` where runuser is missing (:func:`unprivileged_user`, :func:`as_user`);
- running one tool with a deadline, in its own process group so an interrupted caller (SIGTERM,
  Ctrl-C, a timeout) kills the tool and its children instead of leaving them writing into a
  folder being removed (:meth:`PgTools.run`);
- the argument lists of initdb, ``pg_ctl start`` and ``pg_ctl stop``.

What a failure means is the caller's to say (the lab raises its own errors, the blocks theirs):
these functions return the finished process, or raise :class:`ToolTimeout`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_delivery.migrations_lab.errors import LabConfigError, PostgresNotFound


class ToolTimeout(Exception):
    """A PostgreSQL tool did not finish in time (it and its process group were killed)."""

    def __init__(self, tool: str, timeout_s: float):
        super().__init__(f"{tool} did not finish within {timeout_s:.0f}s")
        self.tool = tool
        self.timeout_s = timeout_s


def find_bindir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where initdb/pg_ctl live: explicit, ``pg_config --bindir``, Debian layout, PATH."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    if os.environ.get("MIGRATIONS_LAB_PG_BINDIR"):
        candidates.append(Path(os.environ["MIGRATIONS_LAB_PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p)] or [0],
        reverse=True,
    )
    candidates.extend(Path(p) for p in debian)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for c in candidates:
        if all((c / b).is_file() for b in ("initdb", "pg_ctl", "postgres")):
            return c
    raise PostgresNotFound(
        "local PostgreSQL",
        "initdb, pg_ctl and postgres were not found (looked at pg_config --bindir, "
        "/usr/lib/postgresql/*/bin and PATH).",
        "install the server package (Debian/Ubuntu: apt-get install postgresql; Fedora: "
        "postgresql-server; macOS: brew install postgresql), set MIGRATIONS_LAB_PG_BINDIR, "
        "or use the docker provider (--provider docker).",
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unprivileged_user(requested: str | None = None) -> str | None:
    """The user PostgreSQL runs as: None when this process is not root (it runs as itself),
    else ``requested``, ``$MIGRATIONS_LAB_PG_USER`` or ``postgres`` (checked to exist)."""
    if os.geteuid() != 0:
        return None
    name = requested or os.environ.get("MIGRATIONS_LAB_PG_USER") or "postgres"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise LabConfigError(
            "local PostgreSQL as root",
            f"PostgreSQL refuses to run as root and the user {name!r} to run it as "
            "does not exist.",
            f"create it (useradd --system --no-create-home {name}), or pass run_as= / set "
            "MIGRATIONS_LAB_PG_USER to an existing unprivileged user.",
        ) from None
    if entry.pw_uid == 0:
        raise LabConfigError(
            f"run_as={name!r}",
            "is root; PostgreSQL refuses to run as root.",
            "name an unprivileged user",
        )
    return name


def as_user(argv: list[str], run_as: str | None, home: Path) -> tuple[list[str], dict[str, Any]]:
    """``argv`` and Popen keyword arguments to run a PostgreSQL tool as ``run_as`` (None: as
    this process) with a minimal environment (PostgreSQL refuses to run as root)."""
    kwargs: dict[str, Any] = {
        "env": {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C",
            "LANG": "C",
            "HOME": str(home),
        }
    }
    if run_as:
        runuser = shutil.which("runuser")
        if runuser:
            argv = [runuser, "-u", run_as, "--", *argv]
        else:
            entry = pwd.getpwnam(run_as)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
    return argv, kwargs


def tail(text: str, lines: int = 6) -> str:
    """The last non-empty lines of a tool's output or a server log, on one line."""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


@dataclass
class PgTools:
    """The server binaries in ``bindir``, run as ``run_as`` (None: as this process) from
    ``home`` (their working folder and $HOME)."""

    bindir: Path
    run_as: str | None
    home: Path

    @classmethod
    def find(
        cls, home: Path, bindir: str | os.PathLike[str] | None = None, run_as: str | None = None
    ) -> PgTools:
        return cls(find_bindir(bindir), unprivileged_user(run_as), Path(home))

    def give(self, *paths: Path) -> None:
        """Hand folders or files to the user the server runs as (nothing when not root)."""
        if not self.run_as:
            return
        entry = pwd.getpwnam(self.run_as)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def run(self, argv: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        """Run one tool to its end (any exit code) within ``timeout_s``; raises ToolTimeout.
        The tool runs in its own session: whatever interrupts this call kills its group."""
        argv, kwargs = as_user(argv, self.run_as, self.home)
        proc = subprocess.Popen(
            argv,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a started server outlives this process and its signals
            **kwargs,
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if isinstance(exc, subprocess.TimeoutExpired):
                tool = next((Path(a).name for a in argv if str(self.bindir) in a), argv[0])
                raise ToolTimeout(tool, timeout_s) from None
            raise
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def initdb(
        self, datadir: Path, superuser: str, timeout_s: float, pwfile: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A new cluster: UTF8, C locale, trust on the unix socket, scram-sha-256 on TCP."""
        argv = [str(self.bindir / "initdb"), "-D", str(datadir), "-U", superuser]
        if pwfile is not None:
            argv.append(f"--pwfile={pwfile}")
        argv += [
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        return self.run(argv, timeout_s)

    def start(
        self, datadir: Path, logfile: Path, timeout_s: float, port: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``pg_ctl start``, waiting up to ``timeout_s`` for the server to accept connections."""
        argv = [str(self.bindir / "pg_ctl"), "-D", str(datadir), "-l", str(logfile)]
        if port is not None:
            argv += ["-o", f"-p {port}"]
        argv += ["-w", "-t", str(int(timeout_s)), "start"]
        return self.run(argv, timeout_s + 30)

    def stop(
        self, datadir: Path, timeout_s: float, mode: str = "fast"
    ) -> subprocess.CompletedProcess[str]:
        """``pg_ctl stop -m MODE`` (fast: roll back and disconnect; immediate: no checkpoint)."""
        argv = [str(self.bindir / "pg_ctl"), "-D", str(datadir), "-m", mode, "-w"]
        return self.run([*argv, "-t", str(int(timeout_s)), "stop"], timeout_s + 30)
