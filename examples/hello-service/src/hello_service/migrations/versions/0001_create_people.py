"""Create people (id, name) with a few rows: the baseline the name split starts from.

Release 1 code reads people.name.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
phase = "expand"
release = "1"


def upgrade() -> None:
    op.execute("SET lock_timeout = '2s'")
    people = op.create_table(
        "people",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
    )
    op.bulk_insert(
        people,
        [
            {"name": "Ada Lovelace"},
            {"name": "Grace Hopper"},
            {"name": "Alan Turing"},
            {"name": "Edsger Wybe Dijkstra"},
            {"name": "Hypatia"},
        ],
    )


def downgrade() -> None:
    op.drop_table("people")
