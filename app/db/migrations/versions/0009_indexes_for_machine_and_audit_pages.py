"""indexes that order the machines page and the audit trail, and count owned groups

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 12:30:00

"""

from collections.abc import Sequence

from app.db.online_index import replace_index

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (index, table, its columns before, after).
WIDENED = (
    # The machines page walks an environment's machines by (name, id): without it, every
    # machine of the environment was read and sorted for each page.
    (
        "ix_machines_environment_id",
        "machines",
        ["environment_id"],
        ["environment_id", "name_key", "id"],
    ),
    # The groups a viewer owns, counted in one environment.
    ("ix_machine_groups_owner_id", "machine_groups", ["owner_id"], ["owner_id", "environment_id"]),
    # The trail newest first, (at, id) descending, whole or by kind, record, actor or
    # subject. (On SQLite the integer id is the rowid, in every index already.)
    ("ix_audit_entries_at", "audit_entries", ["at"], ["at", "id"]),
    ("ix_audit_entries_kind", "audit_entries", ["kind"], ["kind", "at", "id"]),
    ("ix_audit_record", "audit_entries", ["record_id", "at"], ["record_id", "at", "id"]),
    ("ix_audit_actor", "audit_entries", ["actor_id", "at"], ["actor_id", "at", "id"]),
    (
        "ix_audit_subject",
        "audit_entries",
        ["subject_user_id", "at"],
        ["subject_user_id", "at", "id"],
    ),
)


def upgrade() -> None:
    """Pages of machines and of the audit trail walk an index in their order and stop
    once full. Built concurrently on PostgreSQL (app/db/online_index.py)."""
    for name, table, _before, after in WIDENED:
        replace_index(name, table, after)


def downgrade() -> None:
    """Back to the indexes of revision 0007."""
    for name, table, before, _after in reversed(WIDENED):
        replace_index(name, table, before)
