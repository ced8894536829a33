"""Render one revision's upgrade SQL offline (``alembic upgrade DOWN:REV --sql``) for PostgreSQL.

The SQL is produced through Alembic's API into a buffer; nothing connects to a database.
``env.py`` gets ``config.attributes["url"]`` (and an in-memory ``sqlalchemy.url``) pointing at a
dummy PostgreSQL URL, so the postgresql dialect renders the statements.
"""

from __future__ import annotations

import io

from alembic import command

from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.project import AlembicProject, host_logging_kept


def render_upgrade(project: AlembicProject, revision: str, down_revision: str | None) -> str:
    """The SQL Alembic would run to upgrade ``down_revision`` -> ``revision``."""
    buffer = io.StringIO()
    cfg = project.config(buffer=buffer)
    rng = f"{down_revision}:{revision}" if down_revision else revision
    try:
        with host_logging_kept():
            command.upgrade(cfg, rng, sql=True)
    except Exception as exc:  # a revision's own code failed; report, do not crash the lab
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise LabConfigError(
            f"revision {revision}",
            f"cannot render its upgrade SQL offline ({type(exc).__name__}: {first}).",
            "guard online-only code with `if not op.get_context().as_sql:` (or use "
            "migrations_lab.batched_backfill, which renders offline)",
        ) from exc
    return buffer.getvalue()
