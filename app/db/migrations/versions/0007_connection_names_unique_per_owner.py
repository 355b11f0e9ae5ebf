"""connection names unique per owner

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:00:00

"""

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_NAME = 100  # a name's length, as app/domain/validation.py allows
CONNECTIONS = sa.table(
    "connections",
    sa.column("id", sa.String()),
    sa.column("owner_id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("name_key", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _key(name: str) -> str:
    """Names compare case-insensitively: app/domain/validation.py's `name_key` as it is
    when this migration is written (a migration keeps its own copy of what it relies on)."""
    return name.casefold()


def _free_name(name: str, taken: set[str]) -> str:
    """`name (2)`, `name (3)`... : the first of them no other connection of the owner has."""
    number = 2
    while True:
        suffix = f" ({number})"
        candidate = name[: MAX_NAME - len(suffix)] + suffix
        if _key(candidate) not in taken:
            return candidate
        number += 1


def upgrade() -> None:
    """A connection's name is unique among its owner's connections, compared ignoring case.

    Connections that already share a name with an earlier one of the same owner are
    renamed `name (2)`, `name (3)`..., the oldest keeping its name; then the database
    itself refuses duplicates.
    """
    op.add_column("connections", sa.Column("name_key", sa.String(), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(CONNECTIONS.c.id, CONNECTIONS.c.owner_id, CONNECTIONS.c.name).order_by(
            CONNECTIONS.c.owner_id, CONNECTIONS.c.created_at, CONNECTIONS.c.id
        )
    ).all()
    taken: defaultdict[str, set[str]] = defaultdict(set)
    for row in rows:
        taken[row.owner_id].add(_key(row.name))
    kept: defaultdict[str, set[str]] = defaultdict(set)
    for row in rows:
        name = row.name
        if _key(name) in kept[row.owner_id]:
            name = _free_name(name, taken[row.owner_id])
            taken[row.owner_id].add(_key(name))
        kept[row.owner_id].add(_key(name))
        connection.execute(
            sa.update(CONNECTIONS)
            .where(CONNECTIONS.c.id == row.id)
            .values(name=name, name_key=_key(name))
        )
    with op.batch_alter_table("connections") as batch:
        batch.alter_column("name_key", existing_type=sa.String(), nullable=False)
    op.create_index(
        "ux_connections_owner_name", "connections", ["owner_id", "name_key"], unique=True
    )


def downgrade() -> None:
    """Names may repeat again (renamed connections keep their new names)."""
    op.drop_index("ux_connections_owner_name", table_name="connections")
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("name_key")
