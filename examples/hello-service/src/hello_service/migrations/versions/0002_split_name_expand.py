"""Expand: add people.first_name and people.last_name, nullable.

Additive and backward compatible: release 1 code (reads name) runs on it unchanged, and
release 2 code still reads name, so it runs on the schema before and after this revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
phase = "expand"
release = "2"
replaces = {"people.name": ["people.first_name", "people.last_name"]}


def upgrade() -> None:
    op.execute("SET lock_timeout = '2s'")
    op.add_column("people", sa.Column("first_name", sa.Text, nullable=True))
    op.add_column("people", sa.Column("last_name", sa.Text, nullable=True))


def downgrade() -> None:
    op.execute("SET lock_timeout = '2s'")
    op.drop_column("people", "last_name")
    op.drop_column("people", "first_name")
