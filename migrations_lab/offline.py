"""Render one revision's upgrade SQL offline (``alembic upgrade DOWN:REV --sql``) for PostgreSQL.

The SQL is produced through Alembic's API into a buffer; nothing connects to a database.
``env.py`` gets ``config.attributes["url"]`` (and an in-memory ``sqlalchemy.url``) pointing at a
dummy PostgreSQL URL, so the postgresql dialect renders the statements.
"""

from __future__ import annotations

from prefect_delivery.migrations_lab.envrun import StepFailed
from prefect_delivery.migrations_lab.errors import LabConfigError
from prefect_delivery.migrations_lab.project import AlembicProject


def render_upgrade(project: AlembicProject, revision: str, down_revision: str | None) -> str:
    """The SQL Alembic would run to upgrade ``down_revision`` -> ``revision``."""
    try:
        return project.driver.render(revision, down_revision)
    except StepFailed as exc:  # a revision's own code failed; report, do not crash the lab
        first = str(exc.info.get("message", "")).strip()[:200]
        line = exc.info.get("revision_line") or exc.info.get("env_line")
        raise LabConfigError(
            f"revision {revision}" + (f" (line {line})" if line else ""),
            f"cannot render its upgrade SQL offline ({exc.info.get('type')}: {first}).",
            "guard online-only code with `if not op.get_context().as_sql:` (or use "
            "migrations_lab.batched_backfill, which renders offline)",
        ) from None
