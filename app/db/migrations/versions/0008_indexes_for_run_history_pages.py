"""indexes that order the run history pages

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 12:00:00

"""

from collections.abc import Sequence

from app.db.online_index import create_index, drop_index, replace_index

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, its columns before, after): each keeps its leading columns, so every search
# that used it still does; the new columns order a page of it newest first.
WIDENED = (
    ("ix_runs_enqueued_at", ["enqueued_at"], ["enqueued_at", "id"]),
    ("ix_runs_status_enqueued", ["status", "enqueued_at"], ["status", "enqueued_at", "id"]),
    ("ix_runs_group_status", ["group_id", "status"], ["group_id", "status", "enqueued_at", "id"]),
    (
        "ix_runs_machine_status",
        ["machine_id", "status"],
        ["machine_id", "status", "enqueued_at", "id"],
    ),
    (
        "ix_runs_target_status",
        ["target_machine_id", "status"],
        ["target_machine_id", "status", "enqueued_at", "id"],
    ),
)


def upgrade() -> None:
    """A page of run history walks an index in its order, (enqueued_at, id) descending,
    and stops once full: all runs, a status's, a group's, a group's in one status, a
    machine's in one status. Built concurrently on PostgreSQL (app/db/online_index.py)."""
    for name, _before, after in WIDENED:
        replace_index(name, "runs", after)
    create_index("ix_runs_group_enqueued", "runs", ["group_id", "enqueued_at", "id"])


def downgrade() -> None:
    """Back to the indexes of revision 0006."""
    drop_index("ix_runs_group_enqueued", "runs")
    for name, before, _after in reversed(WIDENED):
        replace_index(name, "runs", before)
