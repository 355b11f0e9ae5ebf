"""indexes for a machine's queue and for a queue's newest finished runs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """A machine's queue is found by (machine, status) like a group's; a queue's newest
    finished runs are read from the newest end of its history, not the whole of it."""
    # With the machine id alone, SQLite preferred the status index and read every
    # queued (or running) run of every queue; (target_machine_id, status) replaces it.
    op.drop_index("ix_runs_target_machine_id", table_name="runs")
    op.create_index("ix_runs_target_status", "runs", ["target_machine_id", "status"])
    # Start estimates average each queue's newest finished runs: with these indexes the
    # newest are found without reading the queue's history, which grows without bound.
    op.create_index("ix_runs_group_finished", "runs", ["group_id", "finished_at", "started_at"])
    op.create_index(
        "ix_runs_target_finished", "runs", ["target_machine_id", "finished_at", "started_at"]
    )


def downgrade() -> None:
    """Back to the indexes of revision 0004."""
    op.drop_index("ix_runs_target_finished", table_name="runs")
    op.drop_index("ix_runs_group_finished", table_name="runs")
    op.drop_index("ix_runs_target_status", table_name="runs")
    op.create_index("ix_runs_target_machine_id", "runs", ["target_machine_id"])
