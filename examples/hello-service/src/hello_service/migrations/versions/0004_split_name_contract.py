"""Contract: drop people.name, in a release of its own after the code moved off it.

Release 3 (the migrate) already reads first_name / last_name. The downgrade restores the
column and refills it from the data that superseded it (the inverse of the backfill's split).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
phase = "contract"
release = "4"
drops = ["people.name"]

JOIN = (
    "CASE WHEN last_name IS NULL THEN first_name ELSE first_name || ' ' || last_name END"
)


def upgrade() -> None:
    op.execute("SET lock_timeout = '2s'")
    op.drop_column("people", "name")


def downgrade() -> None:
    op.execute("SET lock_timeout = '2s'")
    op.add_column("people", sa.Column("name", sa.Text, nullable=True))
    op.execute(f"UPDATE people SET name = {JOIN} WHERE name IS NULL")
    op.alter_column("people", "name", nullable=False)
