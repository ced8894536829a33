"""Migrate: backfill first_name / last_name from name in keyset batches.

Release 3 code reads first_name / last_name: it is deployed after this revision, so every row
has them by then. The split is the one people.split_name() applies: up to the first space is
the first name, the rest (possibly empty) the last name; no space, no last name (NULL). The
downgrade keeps the backfilled values (name is untouched, so nothing is lost).
"""

from alembic import op
from prefect_delivery.migrations_lab import batched_backfill

revision = "0003"
down_revision = "0002"
phase = "migrate"
release = "3"
replaces = {"people.name": ["people.first_name", "people.last_name"]}

BATCH_SIZE = 1000
PAUSE_S = 0.0
SPLIT = (
    "first_name = split_part(name, ' ', 1), "
    "last_name = CASE WHEN strpos(name, ' ') > 0 THEN substr(name, strpos(name, ' ') + 1) END"
)


def upgrade() -> None:
    op.execute("SET lock_timeout = '2s'")
    with op.get_context().autocommit_block():  # one short transaction per batch
        batched_backfill(op.get_bind, "people", "id", SPLIT, batch_size=BATCH_SIZE,
                         pause_s=PAUSE_S, where="first_name IS NULL")


def downgrade() -> None:
    pass
