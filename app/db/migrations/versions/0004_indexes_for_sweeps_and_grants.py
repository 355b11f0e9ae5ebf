"""indexes for the sweeper's overdue runs and a viewer's grants

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 01:15:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """The sweeper finds overdue queued and running runs by status and time, every second,
    without reading the run history; a viewer's grants are read from one index."""
    op.create_index("ix_runs_status_enqueued", "runs", ["status", "enqueued_at"])
    op.create_index("ix_runs_status_started", "runs", ["status", "started_at"])
    # With record_id in it, the visibility filters' "groups granted to me" subquery is
    # answered from this index alone; without it SQLite preferred the primary key's and
    # read every grant of the record kind, everyone's.
    op.drop_index("ix_grants_user", table_name="grants")
    op.create_index("ix_grants_user", "grants", ["user_id", "record_kind", "record_id"])


def downgrade() -> None:
    """Back to the indexes of revision 0003."""
    op.drop_index("ix_grants_user", table_name="grants")
    op.create_index("ix_grants_user", "grants", ["user_id", "record_kind"])
    op.drop_index("ix_runs_status_started", table_name="runs")
    op.drop_index("ix_runs_status_enqueued", table_name="runs")
