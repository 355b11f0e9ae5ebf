"""one running run per machine

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 17:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUNNING = sa.text("status = 'RUNNING'")


def upgrade() -> None:
    """The database itself refuses a second RUNNING run on one machine."""
    op.create_index(
        "ux_runs_one_running_per_machine",
        "runs",
        ["machine_id"],
        unique=True,
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ux_runs_one_running_per_machine", table_name="runs")
