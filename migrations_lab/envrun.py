"""Drive a project's ``env.py``: one Alembic command at a time, whatever convention it follows.

Standalone on purpose: this file imports only the standard library, Alembic and SQLAlchemy,
so the lab can run it *as a script* in the release's own interpreter (``python envrun.py``,
JSON lines on stdin/stdout, see :func:`serve`) as well as import it in its own.

How the database reaches env.py (all at once, for every command):

- ``config.attributes["connection"]``: a SQLAlchemy ``Connection`` (the Alembic cookbook).
  When env.py calls ``.connect()`` on it (it expects an ``Engine``), the command is run again
  with an ``Engine`` there; nothing ran the first time (the call fails before any migration),
  and the runner keeps that convention for the next commands;
- ``sqlalchemy.url`` (in memory, never written to the ini) and ``config.attributes["url"]``;
- the environment variables named in ``url_env`` (``DATABASE_URL`` and friends), set for the
  duration of the command, so an env.py that reads one never reaches another database (for
  the lab's ephemeral databases, and always in the release's interpreter, whose environment
  is its own; the apply runner on a real database in the lab's own interpreter leaves them);
- ``PGOPTIONS`` carries ``lock_timeout`` / ``statement_timeout``, so even an engine env.py
  builds itself gets them (libpq reads it).

``config.attributes["configure_logger"]`` is False and ``logging.config.fileConfig`` is a no-op
while env.py runs (env.py files call it on the ini and reset the host's logging).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging.config
import os
import sys
import traceback
from collections.abc import Iterator
from typing import Any

CONNECTION, ENGINE, URL = "connection", "engine", "url"
TIMEOUTS_KEY = "migrations_lab.timeouts"  # the marker migrations_lab.connect looks for

HOW_TO_DRIVE = (
    "The lab hands the database to env.py as config.attributes['connection'] (a Connection, "
    "or an Engine when env.py calls .connect() on it), as sqlalchemy.url, as "
    "config.attributes['url'] and in the environment variables {names}"
)


class StepFailed(Exception):
    """A command failed; plain data so it crosses a process boundary."""

    def __init__(self, info: dict[str, Any]):
        self.info = info
        super().__init__(info.get("message", ""))


def describe(exc: BaseException, env_py: str, revision_files: set[str]) -> dict[str, Any]:
    """What failed, where (the revision file's line, or env.py's), with the SQLSTATE."""
    orig = getattr(exc, "orig", None)
    frames = [(os.path.realpath(f.filename), f.lineno) for f in traceback.extract_tb(
        exc.__traceback__)]
    rev_frames = [(f, n) for f, n in frames if f in revision_files]
    env_frames = [(f, n) for f, n in frames if f == os.path.realpath(env_py)]
    statement = getattr(exc, "statement", None)
    return {
        "type": type(orig if orig is not None else exc).__name__,
        "message": " ".join(str(orig if orig is not None else exc).split()),
        "sqlstate": getattr(orig, "sqlstate", None),
        "statement": str(statement) if statement else None,
        "revision_line": rev_frames[-1][1] if rev_frames else None,
        "revision_file": rev_frames[-1][0] if rev_frames else None,
        "env_line": env_frames[-1][1] if env_frames else None,
        # env.py failed before any revision's code ran: a convention it expects is missing
        "in_env": bool(env_frames) and not rev_frames and statement is None,
    }


def _driver(url: str) -> str:
    """``url`` with the PostgreSQL driver this interpreter has (psycopg 3, else psycopg2)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("postgresql"):
        return url
    for module, name in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        try:
            __import__(module)
            if name == "postgresql+psycopg":
                __import__("sqlalchemy.dialects.postgresql.psycopg")
        except ImportError:
            continue
        return parsed.set(drivername=name).render_as_string(hide_password=False)
    raise StepFailed({"type": "NoDriver", "in_env": True, "message": (
        f"the interpreter {sys.executable} has no PostgreSQL driver (psycopg or psycopg2).")})


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    original = logging.config.fileConfig
    logging.config.fileConfig = lambda *a, **k: None  # type: ignore[assignment]
    try:
        yield
    finally:
        logging.config.fileConfig = original  # type: ignore[assignment]
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _expects_engine(exc: BaseException) -> bool:
    return isinstance(exc, AttributeError) and (
        getattr(exc, "name", None) == "connect"
        or "object has no attribute 'connect'" in str(exc)
    )


class EnvRunner:
    """Runs Alembic commands on one project's env.py."""

    def __init__(self, ini_path: str, ini_section: str, script_location: str,
                 url_env: list[str], timeouts: dict[str, int], offline_url: str,
                 url_driver: str | None = None):
        self.ini_path = ini_path
        self.ini_section = ini_section
        self.script_location = script_location
        self.url_env = list(url_env)
        self.url_driver = url_driver
        self.timeouts = timeouts
        self.offline_url = offline_url
        self.convention: str | None = None
        #: env.py drives async code through anyio.from_thread (Prefect's): commands run in an
        #: AnyIO worker thread (found like the Engine convention: the first call says so)
        self.worker_thread = False
        self._revision_files: set[str] | None = None

    # -- config ---------------------------------------------------------------------------
    def config(self, url: str, buffer: io.StringIO | None = None) -> Any:
        from alembic.config import Config

        cfg = Config(self.ini_path, ini_section=self.ini_section, output_buffer=buffer)
        cfg.set_main_option("script_location", self.script_location.replace("%", "%%"))
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        cfg.attributes["configure_logger"] = False
        cfg.attributes["url"] = url
        cfg.attributes["migrations_lab"] = True
        return cfg

    def _env_vars(self, url: str, expose_url: bool = True) -> dict[str, str]:
        if self.url_driver:
            from sqlalchemy.engine import make_url

            url = make_url(url).set(drivername=self.url_driver).render_as_string(
                hide_password=False)
        values = dict.fromkeys(self.url_env, url) if expose_url else {}
        values["PGOPTIONS"] = (f"-c lock_timeout={int(self.timeouts.get('lock_timeout_ms', 2000))}"
                               f" -c statement_timeout="
                               f"{int(self.timeouts.get('statement_timeout_ms', 60000))}")
        return values

    @property
    def env_py(self) -> str:
        return os.path.join(self.script_location, "env.py")

    def revision_files(self) -> set[str]:
        if self._revision_files is None:
            self._revision_files = {os.path.realpath(s["path"])
                                    for s in self.scripts()["revisions"]}
        return self._revision_files

    # -- commands -------------------------------------------------------------------------
    def scripts(self) -> dict[str, Any]:
        """Every revision, base first, with what it declares (plain data)."""
        from alembic.script import ScriptDirectory

        with _environment(self._env_vars(self.offline_url)):
            sd = ScriptDirectory.from_config(self.config(self.offline_url))
            walked = list(sd.walk_revisions("base", "heads"))
            heads = list(sd.get_heads())
        walked.reverse()
        out = []
        for s in walked:
            down = s.down_revision
            downs = [] if down is None else [down] if isinstance(down, str) else list(down)
            attrs = {k: _plain(getattr(s.module, k)) for k in
                     ("phase", "release", "drops", "replaces", "waivers")
                     if hasattr(s.module, k)}
            out.append({"revision": s.revision, "down_revisions": downs, "path": s.path,
                        "doc": s.module.__doc__ or "", "attrs": attrs})
        return {"heads": heads, "revisions": out}

    def render(self, revision: str, down_revision: str | None) -> str:
        """The SQL ``alembic upgrade DOWN:REV --sql`` renders, nothing connects."""
        from alembic import command

        buffer = io.StringIO()
        url = _driver_or_plain(self.offline_url)
        cfg = self.config(url, buffer)
        rng = f"{down_revision}:{revision}" if down_revision else revision
        try:
            with _environment(self._env_vars(url)):
                command.upgrade(cfg, rng, sql=True)
        except Exception as exc:
            raise StepFailed(describe(exc, self.env_py, self.revision_files())) from None
        return buffer.getvalue()

    def run(self, direction: str, target: str, url: str,
            timeouts: dict[str, int] | None = None, expose_url: bool = True) -> dict[str, Any]:
        """Upgrade or downgrade the database at ``url`` to ``target``.

        ``expose_url=False``: the ``url_env`` variables are left as they are (in the lab's own
        interpreter, for a real database: its URL holds a password, and other threads of the
        process would see the environment)."""
        from alembic import command
        from sqlalchemy import create_engine, event
        from sqlalchemy.pool import NullPool

        if timeouts:
            self.timeouts = dict(timeouts)
        url = _driver(url)
        fn = command.upgrade if direction == "upgrade" else command.downgrade
        if self.worker_thread:
            fn = _in_worker_thread(fn)
        engine = create_engine(url, poolclass=NullPool, connect_args={
            "connect_timeout": int(self.timeouts.get("connect_timeout_s", 10)),
            "application_name": "migrations_lab"})

        @event.listens_for(engine, "connect")
        def _mark(dbapi_conn: Any, record: Any) -> None:
            # migrations_lab.apply_timeouts(connection) in env.py: the limits are already set
            record.info[TIMEOUTS_KEY] = dict(self.timeouts)

        used: list[str] = []  # the statements env.py ran on what the lab handed over
        try:
            with _environment(self._env_vars(url, expose_url)):
                if self.convention != ENGINE:
                    try:
                        self._on_connection(fn, engine, url, target, used)
                        self.convention = CONNECTION if used else URL
                        return {"convention": self.convention, "statements": _ddl(used)}
                    except Exception as exc:
                        if _expects_worker_thread(exc) and not used and not self.worker_thread:
                            self.worker_thread = True  # nothing ran: the same command again
                            return self.run(direction, target, url, timeouts, expose_url)
                        if not (_expects_engine(exc) and not used):
                            raise StepFailed(describe(exc, self.env_py,
                                                      self.revision_files())) from None
                event.listen(engine, "before_cursor_execute",
                             lambda _c, _cur, statement, *a: used.append(statement))
                cfg = self.config(url)
                cfg.attributes["connection"] = engine
                try:
                    fn(cfg, target)
                except Exception as exc:
                    raise StepFailed(describe(exc, self.env_py, self.revision_files())) \
                        from None
                self.convention = ENGINE if used else URL
                return {"convention": self.convention, "statements": _ddl(used)}
        finally:
            engine.dispose()

    def _on_connection(self, fn: Any, engine: Any, url: str, target: str,
                       used: list[object]) -> None:
        from sqlalchemy import event

        with engine.connect() as conn:
            event.listen(conn, "before_cursor_execute",
                         lambda _c, _cur, statement, *a: used.append(statement))
            cfg = self.config(url)
            cfg.attributes["connection"] = conn
            try:
                fn(cfg, target)
                if conn.in_transaction():
                    conn.commit()
            except BaseException:
                if conn.in_transaction():
                    conn.rollback()
                raise


def _expects_worker_thread(exc: BaseException) -> bool:
    """anyio.from_thread called outside a worker thread (``NoEventLoopError``)."""
    return type(exc).__name__ == "NoEventLoopError" or "AnyIO worker thread" in str(exc)


def _in_worker_thread(fn: Any) -> Any:
    def call(*args: Any) -> Any:
        import anyio
        import anyio.to_thread

        return anyio.run(anyio.to_thread.run_sync, lambda: fn(*args))

    return call


def _ddl(statements: list[str]) -> list[str]:
    """What a revision ran, without Alembic's bookkeeping and catalog reads."""
    out = []
    for st in statements:
        flat = " ".join(str(st).split())
        low = flat.lower()
        if "alembic_version" in low or low.startswith(("select", "show", "set ")):
            continue
        out.append(flat)
    return out


def _driver_or_plain(url: str) -> str:
    try:
        return _driver(url)
    except StepFailed:  # offline rendering needs the dialect only, not a driver
        from sqlalchemy.engine import make_url

        return make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False)


def _plain(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


# -- the worker: JSON lines on stdin / stdout --------------------------------------------------


def serve(setup: dict[str, Any]) -> None:
    """Answer requests ``{"op": "scripts" | "render" | "run", ...}`` one per line."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever env.py prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    try:
        import alembic  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        out.write(json.dumps({"fatal": f"{sys.executable} cannot import {exc.name}; install "
                              "the release's dependencies (Alembic, SQLAlchemy) in it"}) + "\n")
        return
    runner = EnvRunner(**setup)
    out.write(json.dumps({"ready": sys.executable, "version": sys.version.split()[0]}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            op = request.pop("op")
            result: Any = getattr(runner, op)(**request)
            answer = {"ok": True, "result": result}
        except StepFailed as exc:
            answer = {"ok": False, "error": exc.info}
        except Exception as exc:  # noqa: BLE001 - reported to the lab, never swallowed
            answer = {"ok": False, "error": describe(exc, runner.env_py, set())}
        out.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    serve(json.loads(sys.argv[1]))
