"""server lives

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the server_lives table: when each server started and was last alive, so that
    time during which no server was up does not count against a machine."""
    op.create_table(
        "server_lives",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("alive_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_server_lives_alive_at", "server_lives", ["alive_at"])


def downgrade() -> None:
    """Drop the server_lives table."""
    op.drop_table("server_lives")
