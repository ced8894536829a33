"""Safe apply: one revision at a time, with timeouts, lock-timeout retries and verification.

- Every connection carries ``lock_timeout`` and ``statement_timeout`` (defaults 2 s / 60 s);
  the connection is handed to ``env.py`` through ``config.attributes["connection"]``.
- Each revision runs in its own Alembic command, so a failure leaves the database at the
  previous revision (PostgreSQL rolls DDL back; statements inside
  ``op.get_context().autocommit_block()`` are the exception and are reported as such).
- A lock timeout (SQLSTATE 55P03) is retried with exponential backoff, as long as the
  database is still at the previous revision.
- After each step ``alembic_version`` must hold the expected revision.

The database URL is a ``str`` or ``SecretStr`` and is only ever shown masked.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from prefect_delivery.migrations_lab.connect import TimeoutSettings, connect, make_engine
from prefect_delivery.migrations_lab.envrun import HOW_TO_DRIVE, URL, StepFailed, describe
from prefect_delivery.migrations_lab.errors import (
    LabConfigError,
    LabError,
    MigrationFailed,
    VersionMismatch,
)
from prefect_delivery.migrations_lab.findings import short
from prefect_delivery.migrations_lab.history import History
from prefect_delivery.migrations_lab.project import AlembicProject
from prefect_delivery.migrations_lab.urls import UrlLike, mask, reveal, scrub

log = logging.getLogger("migrations_lab.apply")

LOCK_NOT_AVAILABLE = "55P03"
#: how a failure of env.py itself (before any revision ran) starts
UNDRIVABLE = "the lab cannot drive this env.py"
ENV_IGNORES_CONNECTION = (
    "env.py does not run migrations on config.attributes['connection']: it opens its own "
    "connection from the URL (sqlalchemy.url or an environment variable the lab set), so the "
    "runner's lock_timeout/statement_timeout reach it only through PGOPTIONS, which only "
    "libpq drivers (psycopg, psycopg2) read. Fix: in env.py use "
    "`config.attributes.get('connection')` when set (Alembic cookbook), or call "
    "migrations_lab.apply_timeouts(connection) on the connection it opens."
)
QUERY_CANCELED = "57014"


class RetryPolicy(BaseModel):
    """Retries of a revision that hit lock_timeout."""

    attempts: int = Field(default=5, ge=1)
    initial_delay_s: float = Field(default=0.5, ge=0)
    factor: float = Field(default=2.0, ge=1)
    max_delay_s: float = Field(default=8.0, ge=0)
    jitter: float = Field(default=0.1, ge=0, le=1)

    def delay(self, attempt: int) -> float:
        base = min(self.max_delay_s, self.initial_delay_s * self.factor ** (attempt - 1))
        return base * (1 + random.uniform(-self.jitter, self.jitter))


class StepResult(BaseModel):
    revision: str
    direction: Literal["upgrade", "downgrade"]
    from_revision: str | None
    to_revision: str | None
    attempts: int
    seconds: float


class ApplyResult(BaseModel):
    from_revision: str | None
    to_revision: str | None
    steps: list[StepResult] = Field(default_factory=list)
    #: True when env.py ran migrations on its own connection (runner timeouts not applied)
    env_ignores_connection: bool = False


class Runner:
    """Runs Alembic steps against one database. Use as a context manager."""

    def __init__(
        self,
        project: AlembicProject | str | Path,
        url: UrlLike,
        *,
        timeouts: TimeoutSettings | None = None,
        retry: RetryPolicy | None = None,
        version_table: str = "alembic_version",
        sleep: Callable[[float], None] = time.sleep,
        ephemeral: bool = False,
    ) -> None:
        self.project = project if isinstance(project, AlembicProject) else AlembicProject(project)
        self.url = url
        self.timeouts = timeouts or TimeoutSettings()
        self.retry = retry or RetryPolicy()
        self.version_table = version_table
        self._sleep = sleep
        #: the lab's own throwaway database: its URL may be put in env.py's environment
        self.ephemeral = ephemeral
        self.engine: Engine = make_engine(url, self.timeouts)
        self._history: History | None = None
        #: how env.py took the database: "connection", "engine" or "url" (see envrun.py)
        self.convention: str | None = None
        self.last_statements: list[str] = []
        #: set when env.py ran the migrations on a connection of its own
        self.env_ignores_connection = False

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def history(self) -> History:
        if self._history is None:
            self._history = History(self.project)
        return self._history

    # -- reading ------------------------------------------------------------------------
    def current(self) -> str | None:
        """The revision in the version table (None: no table or empty)."""
        with connect(self.engine, self.url) as conn:
            return _read_version(conn, self.version_table, self.url)

    def resolve(self, target: str) -> str | None:
        if target == "base":
            return None
        if target == "head":
            head = self.history.head()
            if head is None:
                raise LabConfigError(str(self.project.ini_path), "has no revisions.")
            return head
        rev = self.history.get(target)
        if rev is None:
            raise LabConfigError(f"target revision {target!r}", "is not in the project.",
                                 "use 'head', 'base' or a revision id from `alembic history`")
        return rev.revision

    def path(self, lower: str | None, upper: str | None) -> list[str]:
        """Revisions after ``lower`` up to and including ``upper``, oldest first."""
        if upper is None or upper == lower:
            return []
        return list(reversed(self.history.between(upper, lower)))

    def pending(self, target: str = "head") -> list[str]:
        """Revisions an upgrade to ``target`` runs, oldest first."""
        current = self.current()
        self._known(current)
        goal = self.resolve(target)
        if current == goal:
            return []
        line = self.path(None, goal)
        if current is None:
            return line
        if current in line:
            return line[line.index(current) + 1 :]
        raise LabConfigError(
            f"database {mask(self.url)}",
            f"is at revision {current}, which is not below target {goal or 'base'}.",
            "apply only upgrades; use downgrade() to go back",
        )

    def _known(self, revision: str | None) -> None:
        if revision is None:
            return
        if revision not in self.history.by_rev:
            raise LabConfigError(
                f"database {mask(self.url)}",
                f"is at revision {revision}, which this project does not contain.",
                "run the release whose migrations include that revision (or restore the "
                "missing revision file)",
            )

    # -- steps ----------------------------------------------------------------------------
    def upgrade(self, target: str = "head") -> ApplyResult:
        start = self.current()
        steps = [self.step(rev, "upgrade") for rev in self.pending(target)]
        return ApplyResult(from_revision=start, to_revision=self.current(), steps=steps,
                           env_ignores_connection=self.env_ignores_connection)

    def downgrade(self, target: str) -> ApplyResult:
        start = self.current()
        self._known(start)
        goal = self.resolve(target)
        if goal is not None and goal not in self.path(None, start):
            raise LabConfigError(
                f"downgrade target {target!r}", f"is not below the current revision {start}.",
                "pick an ancestor of the current revision",
            )
        steps = [self.step(rev, "downgrade") for rev in reversed(self.path(goal, start))]
        return ApplyResult(from_revision=start, to_revision=self.current(), steps=steps,
                           env_ignores_connection=self.env_ignores_connection)

    def step(self, revision: str, direction: Literal["upgrade", "downgrade"]) -> StepResult:
        """Upgrade to ``revision`` from its parent, or downgrade it to its parent."""
        script = self.history.by_rev[revision]
        parent = script.down_revision
        before, after = (parent, revision) if direction == "upgrade" else (revision, parent)
        relpath = self.project.relpath(Path(script.path))
        started = time.monotonic()
        log.info("%s %s (%s) on %s", direction, revision, relpath, mask(self.url))
        attempt = 0
        while True:
            attempt += 1
            try:
                self._run(direction, after or "base")
                break
            except Exception as exc:  # the revision's code or the database said no
                self._failed(exc, revision, relpath, direction, before, attempt)
        self._verify(after, revision, direction, relpath)
        return StepResult(
            revision=revision, direction=direction, from_revision=before, to_revision=after,
            attempts=attempt, seconds=round(time.monotonic() - started, 3),
        )

    def _run(self, direction: str, target: str) -> None:
        url = reveal(self.url).render_as_string(hide_password=False)
        answer = self.project.driver.run(direction, target, url,
                                         timeouts=self.timeouts.model_dump(),
                                         ephemeral=self.ephemeral)
        self.convention = answer.get("convention")
        #: the statements the last command ran through the lab's connection (or engine)
        self.last_statements = list(answer.get("statements") or [])
        if self.convention == URL and not self.env_ignores_connection:
            self.env_ignores_connection = True
            log.warning("%s", ENV_IGNORES_CONNECTION)

    def _failed(
        self, exc: Exception, revision: str, relpath: str, direction: str,
        before: str | None, attempt: int,
    ) -> None:
        """Retry a lock timeout (returns) or raise MigrationFailed."""
        if isinstance(exc, LabError):
            raise exc
        info = exc.info if isinstance(exc, StepFailed) else describe(exc, "", set())
        sqlstate = info.get("sqlstate")
        at = self.current()
        if sqlstate == LOCK_NOT_AVAILABLE and at == before and attempt < self.retry.attempts:
            delay = self.retry.delay(attempt)
            log.warning("revision %s hit lock_timeout (attempt %d of %d); retrying in %.1fs",
                        revision, attempt, self.retry.attempts, delay)
            self._sleep(delay)
            return
        reason = scrub(str(info.get("message", "")), self.url).split(" [SQL:")[0]
        if info.get("in_env"):
            raise self._undrivable(info, reason, direction, revision)
        statement = info.get("statement")
        line = info.get("revision_line")
        where = f"revision {revision} ({relpath}{f':{line}' if line else ''})"
        problem = f"{direction} failed"
        if sqlstate:
            problem += f" [SQLSTATE {sqlstate}]"
        problem += f": {info.get('type')}: {reason}"
        if statement:
            problem += f" -- statement: {short(scrub(str(statement), self.url))}"
        if attempt > 1:
            problem += f" (after {attempt} attempts)"
        if at == before:
            problem += f". The database is at revision {before or 'base'} (verified)"
            if self._uses_autocommit(revision):
                problem += ("; statements already run inside autocommit_block() are not "
                            "rolled back")
            problem += "."
        else:
            problem += (f". The database is at revision {at or 'base'}, expected "
                        f"{before or 'base'}.")
        raise MigrationFailed(
            where, problem, _fix_for(sqlstate, direction),
            revision=revision, at_revision=at, sqlstate=sqlstate,
        ) from exc

    def _undrivable(self, info: dict[str, object], reason: str, direction: str,
                    revision: str) -> MigrationFailed:
        env_py = f"{self.project.relpath(Path(self.project.script_location) / 'env.py')}"
        line = info.get("env_line")
        names = ", ".join(self.project.url_env)
        return MigrationFailed(
            f"{env_py}{f':{line}' if line else ''}",
            f"{UNDRIVABLE}: it raised {info.get('type')}: {reason} before "
            f"any revision ran ({direction} to {revision}). "
            + HOW_TO_DRIVE.format(names=names) + ".",
            "make env.py take the database from one of these (the Alembic cookbook: use "
            "config.attributes.get('connection') when it is set), or name the environment "
            "variable it reads in the lab settings (`url_env` in alembic.ini [migrations_lab] "
            "or delivery.toml [lab]); if it imports the project's packages, run the lab with "
            "the release's interpreter (--python PATH)",
            revision=revision, at_revision=self.current(), sqlstate=None,
        )

    def _uses_autocommit(self, revision: str) -> bool:
        script = self.history.by_rev[revision]
        try:
            return "autocommit_block" in Path(script.path).read_text()
        except OSError:
            return False

    def _verify(self, expected: str | None, revision: str, direction: str, relpath: str) -> None:
        at = self.current()
        if at != expected:
            raise VersionMismatch(
                f"revision {revision} ({relpath})",
                f"after the {direction}, {self.version_table} holds {at or 'nothing'}, "
                f"expected {expected or 'nothing (base)'}.",
                "make env.py run migrations on the database the lab hands over. "
                + HOW_TO_DRIVE.format(names=", ".join(self.project.url_env))
                + " (Alembic cookbook: 'Sharing a Connection across one or more programmatic "
                "migration commands')",
            )


def _fix_for(sqlstate: str | None, direction: str) -> str:
    if sqlstate == LOCK_NOT_AVAILABLE:
        return ("another session holds a conflicting lock; find it in pg_locks / "
                "pg_stat_activity, retry off-peak, or split the DDL into smaller steps")
    if sqlstate == QUERY_CANCELED:
        return ("the statement ran past statement_timeout; make it cheaper (batches, "
                "CONCURRENTLY, NOT VALID) or raise statement_timeout for this revision")
    return f"fix the revision's {direction}() and run again"


# -- public helpers ---------------------------------------------------------------------------


def _read_version(conn: Connection, version_table: str, url: UrlLike) -> str | None:
    if not inspect(conn).has_table(version_table):
        return None
    rows = conn.execute(text(f'SELECT version_num FROM "{version_table}"')).scalars().all()
    if len(rows) > 1:
        raise LabConfigError(
            f"database {mask(url)}",
            f"{version_table} holds several revisions ({', '.join(rows)}).",
            "the lab applies linear histories; resolve the branches first",
        )
    return rows[0] if rows else None


def current_revision(
    url: UrlLike, *, version_table: str = "alembic_version", timeouts: TimeoutSettings | None = None
) -> str | None:
    """The revision a database is at (None when it has no version table or no row)."""
    engine = make_engine(url, timeouts)
    try:
        with connect(engine, url) as conn:
            return _read_version(conn, version_table, url)
    finally:
        engine.dispose()


def pending_revisions(
    project: AlembicProject | str | Path, url: UrlLike, target: str = "head", **options: object
) -> list[str]:
    """Revisions ``apply_pending`` would run, oldest first."""
    with Runner(project, url, **options) as runner:  # type: ignore[arg-type]
        return runner.pending(target)


def apply_pending(
    project: AlembicProject | str | Path,
    url: UrlLike,
    target: str = "head",
    *,
    timeouts: TimeoutSettings | None = None,
    retry: RetryPolicy | None = None,
    version_table: str = "alembic_version",
) -> ApplyResult:
    """Upgrade ``url`` to ``target`` one revision at a time (see module docstring).

    Raises ``MigrationFailed`` (with ``at_revision`` verified), ``DatabaseUnavailable``,
    ``VersionMismatch`` or ``LabConfigError``.
    """
    with Runner(project, url, timeouts=timeouts, retry=retry,
                version_table=version_table) as runner:
        return runner.upgrade(target)


def downgrade(
    project: AlembicProject | str | Path,
    url: UrlLike,
    target: str,
    *,
    timeouts: TimeoutSettings | None = None,
    retry: RetryPolicy | None = None,
    version_table: str = "alembic_version",
) -> ApplyResult:
    """Downgrade ``url`` to ``target`` (a revision or 'base'), one revision at a time."""
    with Runner(project, url, timeouts=timeouts, retry=retry,
                version_table=version_table) as runner:
        return runner.downgrade(target)
