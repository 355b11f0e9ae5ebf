"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 13:13:28.755986

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""

    op.create_table(
        "environments",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("name_key", sa.String(), nullable=False),
        sa.Column("region", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name_key"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("name_key", sa.String(), nullable=False),
        sa.Column("premium", sa.Boolean(), nullable=False),
        sa.Column("deactivated", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name_key"),
    )
    op.create_table(
        "grants",
        sa.Column("record_kind", sa.String(), nullable=False),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("level", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("record_kind", "record_id", "user_id"),
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index("ix_grants_user", ["user_id", "record_kind"], unique=False)

    op.create_table(
        "machine_groups",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("environment_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("name_key", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("owner_id", sa.String(), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=True),
        sa.Column("throttled_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("maintenance", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("environment_id", "name_key"),
    )
    with op.batch_alter_table("machine_groups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_machine_groups_environment_id"), ["environment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_machine_groups_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "role_assignments",
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("environment_id", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("user_id", "environment_id", "role"),
    )
    op.create_table(
        "machines",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("environment_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("name_key", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("owner_id", sa.String(), nullable=False),
        sa.Column("group_id", sa.String(), nullable=True),
        sa.Column("key_hash", sa.String(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["machine_groups.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_machines_environment_id"), ["environment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_machines_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_machines_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "password_failures",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("group_id", sa.String(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["machine_groups.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("password_failures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_password_failures_group_id"), ["group_id"], unique=False
        )

    op.create_table(
        "connections",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("owner_id", sa.String(), nullable=False),
        sa.Column("machine_id", sa.String(), nullable=True),
        sa.Column("group_id", sa.String(), nullable=True),
        sa.Column("username", sa.String(), nullable=False),
        sa.Column("password_encrypted", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("broken_reason", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["machine_groups.id"],
        ),
        sa.ForeignKeyConstraint(
            ["machine_id"],
            ["machines.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_connections_group_id"), ["group_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_connections_machine_id"), ["machine_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_connections_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "runs",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("flow_name", sa.String(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=True),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("run_mode", sa.String(), nullable=False),
        sa.Column("group_id", sa.String(), nullable=True),
        sa.Column("target_machine_id", sa.String(), nullable=True),
        sa.Column("machine_id", sa.String(), nullable=True),
        sa.Column("connection_id", sa.String(), nullable=True),
        sa.Column("started_by_id", sa.String(), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
        ),
        sa.ForeignKeyConstraint(
            ["started_by_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_enqueued_at"), ["enqueued_at"], unique=False)
        batch_op.create_index("ix_runs_group_status", ["group_id", "status"], unique=False)
        batch_op.create_index("ix_runs_machine_status", ["machine_id", "status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_runs_target_machine_id"), ["target_machine_id"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema."""

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_target_machine_id"))
        batch_op.drop_index("ix_runs_machine_status")
        batch_op.drop_index("ix_runs_group_status")
        batch_op.drop_index(batch_op.f("ix_runs_enqueued_at"))

    op.drop_table("runs")
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connections_owner_id"))
        batch_op.drop_index(batch_op.f("ix_connections_machine_id"))
        batch_op.drop_index(batch_op.f("ix_connections_group_id"))

    op.drop_table("connections")
    with op.batch_alter_table("password_failures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_password_failures_group_id"))

    op.drop_table("password_failures")
    with op.batch_alter_table("machines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_machines_owner_id"))
        batch_op.drop_index(batch_op.f("ix_machines_group_id"))
        batch_op.drop_index(batch_op.f("ix_machines_environment_id"))

    op.drop_table("machines")
    op.drop_table("role_assignments")
    with op.batch_alter_table("machine_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_machine_groups_owner_id"))
        batch_op.drop_index(batch_op.f("ix_machine_groups_environment_id"))

    op.drop_table("machine_groups")
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index("ix_grants_user")

    op.drop_table("grants")
    op.drop_table("users")
    op.drop_table("environments")
