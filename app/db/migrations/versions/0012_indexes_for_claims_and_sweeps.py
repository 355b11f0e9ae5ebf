"""indexes that hand a queue's next run over and find machines that just went offline

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 01:30:00

"""

from collections.abc import Sequence

from app.db.online_index import create_index, drop_index

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, table, columns).
ADDED = (
    # A claim reads the head of its group's queue and of its machine's own queue, each in
    # dispatch order (priority descending, then first in, first out): one row each. The
    # status index it was planned on read and sorted every queued run of every queue.
    (
        "ix_runs_group_dispatch",
        "runs",
        ["group_id", "status", "priority DESC", "enqueued_at", "id"],
    ),
    (
        "ix_runs_target_dispatch",
        "runs",
        ["target_machine_id", "status", "priority DESC", "enqueued_at", "id"],
    ),
    # The sweeper's machines whose heartbeat expired since its previous pass, a range of
    # last_seen_at (each second, it walked every grouped machine).
    ("ix_machines_last_seen_at", "machines", ["last_seen_at", "group_id"]),
)


def upgrade() -> None:
    """Claims and the sweeper's pass read a few rows by index, whatever the history.
    Built concurrently on PostgreSQL (app/db/online_index.py)."""
    for name, table, columns in ADDED:
        create_index(name, table, columns)


def downgrade() -> None:
    """Back to the indexes of revision 0011."""
    for name, table, _columns in reversed(ADDED):
        drop_index(name, table)
