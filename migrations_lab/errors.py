"""Errors the lab raises on purpose.

Every message names where the problem is, what is wrong and how to fix it, and never
contains a database password (URLs are shown masked, see :mod:`migrations_lab.urls`).

- ``LabConfigError``: bad input (a project path, a revision file, a phase plan, a setting).
- ``PostgresNotFound``: no PostgreSQL server binaries on this machine.
- ``PostgresStartError``: an ephemeral cluster (local or container) did not come up.
- ``DatabaseUnavailable``: a database could not be reached (down, wrong password, no such db).
- ``MigrationFailed``: a revision failed while applying; says which revision and where the
  database was left.
- ``VersionMismatch``: after a step, ``alembic_version`` does not hold the expected revision.
"""

from __future__ import annotations


class LabError(Exception):
    """Base class: ``where: problem Fix: fix``."""

    def __init__(self, where: str, problem: str, fix: str | None = None):
        self.where = where
        self.problem = problem
        self.fix = fix
        text = f"{where}: {problem}"
        if fix:
            text += f" Fix: {fix}"
        super().__init__(text)


class LabConfigError(LabError):
    """Bad input: a path, a revision file, a plan or a setting."""


class PostgresNotFound(LabConfigError):
    """PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found."""


class PostgresStartError(LabError):
    """An ephemeral PostgreSQL cluster did not start or did not answer."""


class DatabaseUnavailable(LabError):
    """A database could not be reached: down, refused, wrong password or missing."""


class MigrationFailed(LabError):
    """A revision failed; ``at_revision`` is where the database was left (verified)."""

    def __init__(
        self,
        where: str,
        problem: str,
        fix: str | None = None,
        *,
        revision: str,
        at_revision: str | None,
        sqlstate: str | None = None,
    ):
        self.revision = revision
        self.at_revision = at_revision
        self.sqlstate = sqlstate
        super().__init__(where, problem, fix)


class VersionMismatch(LabError):
    """``alembic_version`` does not hold the revision a step was supposed to leave."""
