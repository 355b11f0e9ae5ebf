"""indexes that read a viewer's own queues newest first

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 18:00:00

"""

from collections.abc import Sequence

from app.db.online_index import create_index, drop_index

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """A viewer who sees few groups and machines reads each one's queue newest first, and
    the runs they started (app/domain/queue_history.py): the runs aimed at a machine by
    `(target_machine_id, enqueued_at, id)`, a starter's by `(started_by_id, enqueued_at,
    id)`; a group's by `ix_runs_group_enqueued` (0008). Built concurrently on PostgreSQL
    (app/db/online_index.py)."""
    create_index("ix_runs_target_enqueued", "runs", ["target_machine_id", "enqueued_at", "id"])
    create_index("ix_runs_started_by", "runs", ["started_by_id", "enqueued_at", "id"])


def downgrade() -> None:
    """Back to the indexes of revision 0010."""
    drop_index("ix_runs_started_by", "runs")
    drop_index("ix_runs_target_enqueued", "runs")
