"""the agent channel: offered runs, machines' channels and when their agent left

Revision ID: 0010
Revises: 0009
Create Date: 2027-01-10 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """A run pushed on a channel is held unconfirmed (`confirmed_at` null) until its agent
    confirms it; a machine records the channel its agent holds and when its agent left."""
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
    # Every run held so far was claimed over HTTP: handed over in the claim's answer.
    op.execute("UPDATE runs SET confirmed_at = started_at WHERE started_at IS NOT NULL")
    with op.batch_alter_table("machines") as machines:
        machines.add_column(sa.Column("left_at", sa.DateTime(timezone=True), nullable=True))
        machines.add_column(sa.Column("channel_id", sa.String(), nullable=True))
        machines.add_column(sa.Column("channel_agent", sa.String(), nullable=True))
        machines.add_column(sa.Column("channel_server", sa.String(), nullable=True))


def downgrade() -> None:
    """Back to revision 0009."""
    with op.batch_alter_table("machines") as machines:
        machines.drop_column("channel_server")
        machines.drop_column("channel_agent")
        machines.drop_column("channel_id")
        machines.drop_column("left_at")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("confirmed_at")
