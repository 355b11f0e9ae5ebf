"""The tables. Every id is an opaque random string; names keep a lower-cased key for uniqueness."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel, col


def new_id() -> str:
    """A fresh opaque identifier."""
    return uuid.uuid4().hex


_last_ordered = 0
_ordered_lock = threading.Lock()


def new_ordered_id() -> str:
    """An opaque identifier that sorts in creation order within this process.

    Runs enqueued at the same instant (a coarse clock, a test clock) still keep first
    in, first out: the queue orders by (priority, enqueued_at, id).
    """
    global _last_ordered
    with _ordered_lock:
        _last_ordered = max(_last_ordered + 1, time.time_ns())
        stamp = _last_ordered
    return f"{stamp:016x}{secrets.token_hex(8)}"


def _utc(nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default=None if nullable else ...,
        sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index),
    )


class Environment(SQLModel, table=True):
    __tablename__ = "environments"

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str
    name_key: str = Field(unique=True)
    region: str
    created_at: datetime = _utc()


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str
    name_key: str = Field(unique=True)
    premium: bool = False
    deactivated: bool = False
    created_at: datetime = _utc()


class RoleAssignment(SQLModel, table=True):
    __tablename__ = "role_assignments"

    user_id: str = Field(foreign_key="users.id", primary_key=True)
    environment_id: str = Field(foreign_key="environments.id", primary_key=True)
    role: str = Field(primary_key=True)


class MachineGroup(SQLModel, table=True):
    __tablename__ = "machine_groups"
    __table_args__ = (
        # Also the groups page's walk, by name in an environment.
        UniqueConstraint("environment_id", "name_key"),
        # The groups a viewer owns in an environment, counted for the page (migration 0009).
        Index("ix_machine_groups_owner_id", "owner_id", "environment_id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    environment_id: str = Field(foreign_key="environments.id", index=True)
    name: str
    name_key: str
    description: str | None = None
    owner_id: str = Field(foreign_key="users.id")
    password_hash: str | None = None
    throttled_until: datetime | None = _utc(nullable=True)
    maintenance: bool = False
    created_at: datetime = _utc()


class PasswordFailure(SQLModel, table=True):
    """One wrong group password, kept to throttle guessing."""

    __tablename__ = "password_failures"

    id: str = Field(default_factory=new_id, primary_key=True)
    group_id: str = Field(foreign_key="machine_groups.id", index=True)
    at: datetime = _utc()


class Machine(SQLModel, table=True):
    __tablename__ = "machines"
    __table_args__ = (
        # The machines page walks an environment's machines by (name, id) (migration 0009).
        Index("ix_machines_environment_id", "environment_id", "name_key", "id"),
        # The sweeper's machines whose heartbeat just expired, a range of last_seen_at;
        # group_id makes it covering (migration 0012).
        Index("ix_machines_last_seen_at", "last_seen_at", "group_id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    environment_id: str = Field(foreign_key="environments.id")
    name: str
    name_key: str  # machine names need not be unique; the key only orders them
    description: str | None = None
    owner_id: str = Field(foreign_key="users.id", index=True)
    group_id: str | None = Field(default=None, foreign_key="machine_groups.id", index=True)
    key_hash: str = Field(unique=True)
    last_seen_at: datetime | None = _utc(nullable=True)
    # When its agent's channel closed: offline from then until the agent's next call.
    left_at: datetime | None = _utc(nullable=True)
    # The live channel its agent holds (app/queue/channel.py): the socket's id, the agent
    # process's own id, and the life of the server holding it (app/queue/uptime.py).
    channel_id: str | None = None
    channel_agent: str | None = None
    channel_server: str | None = None
    created_at: datetime = _utc()


class Grant(SQLModel, table=True):
    """A user's CO_OWNER or USER level on one machine or machine group."""

    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_user", "user_id", "record_kind", "record_id"),)

    record_kind: str = Field(primary_key=True)  # "machine" or "machine_group"
    record_id: str = Field(primary_key=True)
    user_id: str = Field(foreign_key="users.id", primary_key=True)
    level: str  # "CO_OWNER" or "USER"
    created_at: datetime = _utc()


class Connection(SQLModel, table=True):
    __tablename__ = "connections"
    # A connection's name is unique among its owner's connections (migration 0007).
    __table_args__ = (Index("ux_connections_owner_name", "owner_id", "name_key", unique=True),)

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str
    name_key: str
    owner_id: str = Field(foreign_key="users.id", index=True)
    machine_id: str | None = Field(default=None, foreign_key="machines.id", index=True)
    group_id: str | None = Field(default=None, foreign_key="machine_groups.id", index=True)
    username: str
    password_encrypted: str
    status: str = "ACTIVE"
    broken_reason: str | None = None
    created_at: datetime = _utc()


class Run(SQLModel, table=True):
    __tablename__ = "runs"
    __table_args__ = (
        # History pages read newest first, (enqueued_at, id) descending, along an index
        # that orders their rows, and stop once full (migration 0008): all runs, a
        # status's, a group's, a group's in one status, a machine's in one status (aimed
        # at it, or run by it). Each index also finds a queue's runs by status, as
        # counts, queues and the sweeper do (migrations 0004, 0006).
        Index("ix_runs_enqueued_at", "enqueued_at", "id"),
        Index("ix_runs_status_enqueued", "status", "enqueued_at", "id"),
        Index("ix_runs_group_enqueued", "group_id", "enqueued_at", "id"),
        Index("ix_runs_group_status", "group_id", "status", "enqueued_at", "id"),
        Index("ix_runs_machine_status", "machine_id", "status", "enqueued_at", "id"),
        Index("ix_runs_target_status", "target_machine_id", "status", "enqueued_at", "id"),
        # A viewer who sees few queues reads each one newest first (a group's: above),
        # and the runs they started (migration 0011).
        Index("ix_runs_target_enqueued", "target_machine_id", "enqueued_at", "id"),
        Index("ix_runs_started_by", "started_by_id", "enqueued_at", "id"),
        # The sweeper's overdue running runs (migration 0004).
        Index("ix_runs_status_started", "status", "started_at"),
        # A queue's newest finished runs, read from the newest end for start estimates
        # (migration 0006); started_at makes the index covering.
        Index("ix_runs_group_finished", "group_id", "finished_at", "started_at"),
        Index("ix_runs_target_finished", "target_machine_id", "finished_at", "started_at"),
        # No machine holds two runs, whatever races between servers (migration 0003).
        Index(
            "ux_runs_one_running_per_machine",
            "machine_id",
            unique=True,
            sqlite_where=text("status = 'RUNNING'"),
            postgresql_where=text("status = 'RUNNING'"),
        ),
    )

    id: str = Field(default_factory=new_ordered_id, primary_key=True)
    flow_name: str
    inputs: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    output: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    status: str = "QUEUED"
    priority: int = 1  # 0 LOW, 1 NORMAL, 2 HIGH: sorts descending
    run_mode: str = "UNATTENDED"
    # Runs are history: these ids may outlive the group or machine they name, so they
    # carry no foreign key (Run.group / Run.machine then answer null).
    # The queue the run waits in: a group, or a single machine for a machine connection.
    group_id: str | None = None
    target_machine_id: str | None = None
    # The machine that holds (or held) the run once claimed.
    machine_id: str | None = None
    connection_id: str | None = Field(default=None, foreign_key="connections.id")
    started_by_id: str = Field(foreign_key="users.id")
    enqueued_at: datetime = _utc()
    started_at: datetime | None = _utc(nullable=True)
    # Null while the run is offered to its machine's agent on the channel and not yet
    # confirmed (app/domain/run_life): such a run never started.
    confirmed_at: datetime | None = _utc(nullable=True)
    finished_at: datetime | None = _utc(nullable=True)
    failure_reason: str | None = None


# A queue's next run to hand over: its head in dispatch order, priority first
# (descending), then first in, first out (migration 0012). Declared beside the table, as
# a descending column is an expression of the mapped column.
Index(
    "ix_runs_group_dispatch",
    col(Run.group_id),
    col(Run.status),
    col(Run.priority).desc(),
    col(Run.enqueued_at),
    col(Run.id),
)
Index(
    "ix_runs_target_dispatch",
    col(Run.target_machine_id),
    col(Run.status),
    col(Run.priority).desc(),
    col(Run.enqueued_at),
    col(Run.id),
)


class ServerLife(SQLModel, table=True):
    """One server process's life: its start, and the last pass of its sweeper.

    Together they say when the service was up: time during which no server was up does
    not count against a machine (app/queue/uptime.py).
    """

    __tablename__ = "server_lives"

    id: str = Field(primary_key=True)
    started_at: datetime = _utc()
    alive_at: datetime = _utc(index=True)


class AuditEntry(SQLModel, table=True):
    """One security event: written in the same transaction as the change it records."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        # The trail is read newest first, (at, id) descending, all of it or by record,
        # actor, subject or kind, each along an index in that order (migration 0009).
        Index("ix_audit_entries_at", "at", "id"),
        Index("ix_audit_entries_kind", "kind", "at", "id"),
        Index("ix_audit_record", "record_id", "at", "id"),
        Index("ix_audit_actor", "actor_id", "at", "id"),
        Index("ix_audit_subject", "subject_user_id", "at", "id"),
    )

    # A sequence, so entries made at the same instant keep the order they were made in.
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _utc()
    # Plain ids, not foreign keys: the trail outlives what it names.
    actor_id: str | None = None  # None: the service itself (policy reloads)
    kind: str
    record_kind: str | None = None
    record_id: str | None = None
    subject_user_id: str | None = None  # the user a grant, role or deactivation is about
    outcome: str = "SUCCESS"
    detail: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
