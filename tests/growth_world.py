"""One world for the growth benchmark (bench/growth.py) and the tests that costs stay
flat as data grows (tests/integration/test_costs_flat.py): built at a scale, inserted
straight into the tables (executemany on SQLite, COPY on PostgreSQL).

1x is 1,000 groups, 2,000 machines, 10,000 runs of history and 1,000 audit entries;
a scale multiplies each (100x: 100,000 groups, 200,000 machines, 1,000,000 runs,
100,000 audit entries). At scale s: 20*s users own the groups and machines; `operator`
(a machine owner, not an administrator) owns one group in ten and holds a grant on every
other (the "viewer of all"), owns a fifth of the standalone machines and holds grants
on two fifths; `narrow` holds a grant on one group. Each group has one or two machines;
a quarter of the machines stand alone. Runs are history (85% succeeded, 8% failed, ...)
spread over 90 days, a tenth aimed at standalone machines, 2% started by `operator`; one
group in a hundred runs one run, one group in twenty holds two queued runs. The `queue`
group holds 500 queued runs, 500*s finished runs of its own history, two machines (one of
them the agent, whose key is AGENT_KEY) and one running run.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlmodel import col

from app.db.models import User
from app.domain.enums import SecurityRole
from app.domain.identity import MACHINE_KEY_PREFIX, hash_machine_key
from app.settings import Settings
from app.state import AppState
from tests.conftest import POLICIES
from tests.served import Request

BASE = {"groups": 1_000, "machines": 2_000, "runs": 10_000, "audit": 1_000}
QUEUED_IN_QUEUE_GROUP = 500
AGENT_KEY = MACHINE_KEY_PREFIX + "growth-bench-agent-key-0123456789abcdefghijklmnop"
SECRET = "growth-secret-key-0123456789abcdef0123456789"

# The requests whose cost must not grow with the data: the console's pages (each with its
# totalCount), and a group's queue with positions and start estimates.
RUN_FIELDS = """id flowName status priority enqueuedAt startedAt finishedAt failureReason
  group { id name } machine { name } startedBy { name }"""
PAGES: dict[str, str] = {
    "machineGroups(first: 50)": """{ machineGroups(first: 50) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { node { id name description myAccess machineCount runningCount queuedCount
        maintenance hasDeactivatedUsers owner { name } } } } }""",
    "machines(first: 50)": """{ machines(first: 50) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { node { id name description status lastSeenAt owner { name } group { id name }
        currentRun { id flowName } } } } }""",
    "runs(first: 50)": f"""{{ runs(first: 50) {{
      totalCount pageInfo {{ hasNextPage endCursor }} edges {{ node {{ {RUN_FIELDS} }} }} }} }}""",
    "runs(status: FAILED, first: 50)": f"""{{ runs(status: [FAILED], first: 50) {{
      totalCount pageInfo {{ hasNextPage endCursor }} edges {{ node {{ {RUN_FIELDS} }} }} }} }}""",
    "runs(groupId: queue, first: 50)": f"""query($g: ID!) {{ runs(groupId: $g, first: 50) {{
      totalCount pageInfo {{ hasNextPage endCursor }} edges {{ node {{ {RUN_FIELDS} }} }} }} }}""",
    "runs(groupId: browsed, first: 50)": f"""query($b: ID!) {{ runs(groupId: $b, first: 50) {{
      totalCount pageInfo {{ hasNextPage endCursor }} edges {{ node {{ {RUN_FIELDS} }} }} }} }}""",
    "auditLog(first: 50), admin": """{ auditLog(first: 50) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { node { id at kind outcome recordKind recordId detail actor { name }
        subjectUser { name } } } } }""",
}
QUEUE = "queue(first: 50) + positions + ETA"
QUEUE_PAGE = """query($g: ID!) { machineGroup(id: $g) { queue(first: 50) {
  id flowName priority queuePosition estimatedStartAt enqueuedAt startedBy { id name } } } }"""


# The columns of each seeded table, in the order of `_rows`'s tuples.
COLUMNS = {
    "users": ("id", "name", "name_key", "premium", "deactivated", "created_at"),
    "role_assignments": ("user_id", "environment_id", "role"),
    "machine_groups": (
        "id", "environment_id", "name", "name_key", "description", "owner_id",
        "password_hash", "throttled_until", "maintenance", "created_at",
    ),
    "machines": (
        "id", "environment_id", "name", "name_key", "description", "owner_id", "group_id",
        "key_hash", "last_seen_at", "created_at",
    ),
    "grants": ("record_kind", "record_id", "user_id", "level", "created_at"),
    "runs": (
        "id", "flow_name", "inputs", "output", "status", "priority", "run_mode", "group_id",
        "target_machine_id", "machine_id", "connection_id", "started_by_id", "enqueued_at",
        "started_at", "finished_at", "failure_reason",
    ),
    "audit_entries": (
        "id", "at", "actor_id", "kind", "record_kind", "record_id", "subject_user_id",
        "outcome", "detail",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class World:
    """What the measurements need to know of a seeded world."""

    scale: int
    environment_id: str
    admin_id: str
    operator_id: str
    queue_group_id: str
    browsed_group_id: str
    agent_machine_id: str
    narrow_id: str
    anchor: str  # the seed's "now"


class Ids:
    """Deterministic ids: opaque hex, as the service makes them."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def new(self) -> str:
        return f"{self._rng.getrandbits(128):032x}"

    def ordered(self, moment: datetime, number: int) -> str:
        """A run id that sorts in enqueue order, like `new_ordered_id`."""
        nanos = int(moment.timestamp() * 1_000_000) * 1000 + number % 1000
        return f"{nanos:016x}{self._rng.getrandbits(64):016x}"


def world_rows(
    scale: int, environment_id: str, admin_id: str, anchor: datetime
) -> tuple[World, dict[str, list[tuple[Any, ...]]]]:
    """Every row of the world at `scale`, by table (parents first), as tuples in the
    order of COLUMNS."""
    rng = random.Random(20261201 + scale)
    ids = Ids(rng)
    at = anchor
    rows: dict[str, list[tuple[Any, ...]]] = {
        name: []
        for name in (
            "users",
            "role_assignments",
            "machine_groups",
            "machines",
            "grants",
            "runs",
            "audit_entries",
        )
    }
    operator, narrow = ids.new(), ids.new()
    owners = [ids.new() for _ in range(20 * scale)]
    rows["users"].append((operator, "operator", "operator", True, False, at))
    rows["users"].append((narrow, "narrow", "narrow", True, False, at))
    for number, user in enumerate(owners):
        rows["users"].append((user, f"user{number}", f"user{number}", True, False, at))
    rows["role_assignments"].append(
        (operator, environment_id, SecurityRole.DESKTOP_FLOWS_MACHINE_OWNER.value)
    )

    group_count = BASE["groups"] * scale
    # Names in an order unrelated to creation: a page by name is not a page by id.
    numbers = rng.sample(range(10 * group_count), group_count)
    groups: list[str] = []
    group_owner: dict[str, str] = {}
    for index in range(group_count):
        group_id = ids.new()
        groups.append(group_id)
        owner = operator if index % 10 == 0 else rng.choice(owners)
        group_owner[group_id] = owner
        name = "queue" if index == 1 else f"Group {numbers[index]:08d}"
        rows["machine_groups"].append(
            (
                group_id,
                environment_id,
                name,
                name.lower(),
                f"group {index}" if index % 2 else None,
                owner,
                None,
                None,
                False,
                at,
            )
        )
        if owner != operator:
            level = "CO_OWNER" if index % 3 else "USER"
            rows["grants"].append(("machine_group", group_id, operator, level, at))
        # Others share groups among themselves too: the grants table is not the operator's.
        other = rng.choice(owners)
        if other != owner:
            rows["grants"].append(("machine_group", group_id, other, "USER", at))
    queue_group, browsed_group = groups[1], groups[2]
    rows["grants"].append(("machine_group", browsed_group, narrow, "USER", at))

    machine_count = BASE["machines"] * scale
    grouped = machine_count * 3 // 4
    machines: list[str] = []
    machine_group: dict[str, str | None] = {}
    agent_machine = ""
    for index in range(machine_count):
        machine = ids.new()
        machines.append(machine)
        # Every group gets one machine, then half of them a second; the rest stand alone.
        if index < group_count:
            group: str | None = groups[index]
        elif index < grouped:
            group = groups[(index - group_count) * 2 % group_count]
        else:
            group = None
        if index == group_count:
            group = queue_group  # the queue group's second machine: the agent
            agent_machine = machine
        machine_group[machine] = group
        owner = group_owner[group] if group else rng.choice([operator, *owners[:4]])
        key_hash = hash_machine_key(AGENT_KEY) if machine == agent_machine else ids.new()
        name = f"VM {rng.getrandbits(40):010x}"
        rows["machines"].append(
            (
                machine,
                environment_id,
                name,
                name.lower(),
                None,
                owner,
                group,
                key_hash,
                at if group else None,
                at,
            )
        )
        if group is None and owner != operator and index % 5 < 2:
            rows["grants"].append(("machine", machine, operator, "USER", at))
    standalone = [machine for machine in machines if machine_group[machine] is None]

    statuses = ["SUCCEEDED"] * 85 + ["FAILED"] * 8 + ["CANCELLED"] * 5 + ["TIMED_OUT"] * 2
    run_count = BASE["runs"] * scale
    history = run_count - QUEUED_IN_QUEUE_GROUP
    start = anchor - timedelta(days=90)
    step = timedelta(days=90) / history
    queue_history = 500 * scale
    running_groups = set(groups[3::100])
    queued_groups = set(groups[5::20])
    special = len(running_groups) + 2 * len(queued_groups) + 1
    machine_of_group: dict[str, str] = {}
    for machine, group in machine_group.items():
        if group is not None:
            machine_of_group.setdefault(group, machine)
    runs = rows["runs"]
    target: str | None
    for index in range(history - special):
        enqueued = start + step * index
        if index % (history // queue_history) == 0:
            group, target = queue_group, None
        elif index % 10 == 9:
            group, target = None, rng.choice(standalone)
        else:
            group, target = rng.choice(groups), None
        ran_on = target or machine_of_group.get(group or "")
        began = enqueued + timedelta(seconds=rng.randint(1, 120))
        ended = began + timedelta(seconds=rng.randint(30, 1800))
        status = rng.choice(statuses)
        starter = operator if index % 50 == 0 else rng.choice(owners)
        runs.append(
            (
                ids.ordered(enqueued, index),
                f"flow {index % 37}",
                None,
                None,
                status,
                rng.choice((0, 1, 1, 1, 2)),
                "UNATTENDED",
                group,
                target,
                ran_on,
                None,
                starter,
                enqueued,
                began,
                ended,
                None if status == "SUCCEEDED" else f"{status.lower()} reason",
            )
        )
    recent = anchor - timedelta(minutes=30)
    number = history
    for group in [*sorted(running_groups), queue_group]:
        number += 1
        machine = machine_of_group[group]
        runs.append(
            (
                ids.ordered(recent, number),
                "long flow",
                None,
                None,
                "RUNNING",
                1,
                "UNATTENDED",
                group,
                None,
                machine,
                None,
                rng.choice(owners),
                recent,
                recent,
                None,
                None,
            )
        )
    for group in sorted(queued_groups):
        for _ in range(2):
            number += 1
            runs.append(
                (
                    ids.ordered(recent, number),
                    "waiting flow",
                    None,
                    None,
                    "QUEUED",
                    1,
                    "UNATTENDED",
                    group,
                    None,
                    None,
                    None,
                    rng.choice(owners),
                    recent,
                    None,
                    None,
                    None,
                )
            )
    for index in range(QUEUED_IN_QUEUE_GROUP):
        number += 1
        enqueued = recent + timedelta(seconds=index)
        runs.append(
            (
                ids.ordered(enqueued, number),
                f"queued flow {index}",
                None,
                None,
                "QUEUED",
                (2, 1, 1, 0)[index % 4],
                "UNATTENDED",
                queue_group,
                None,
                None,
                None,
                rng.choice([operator, *owners]),
                enqueued,
                None,
                None,
                None,
            )
        )

    kinds = ["GRANT_SHARED", "GRANT_REVOKED", "MACHINE_REGISTERED", "WRONG_GROUP_PASSWORD"]
    audit_count = BASE["audit"] * scale
    audit_step = timedelta(days=90) / audit_count
    for index in range(audit_count):
        kind = kinds[index % len(kinds)]
        outcome = "FAILURE" if kind == "WRONG_GROUP_PASSWORD" else "SUCCESS"
        rows["audit_entries"].append(
            (
                index + 1,
                start + audit_step * index,
                rng.choice(owners),
                kind,
                "machine_group",
                rng.choice(groups),
                rng.choice([None, operator]),
                outcome,
                '{"level": "USER"}',
            )
        )
    world = World(
        scale=scale,
        environment_id=environment_id,
        admin_id=admin_id,
        operator_id=operator,
        queue_group_id=queue_group,
        browsed_group_id=browsed_group,
        agent_machine_id=agent_machine,
        narrow_id=narrow,
        anchor=anchor.isoformat(),
    )
    return world, rows


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")  # as SQLAlchemy stores it in SQLite
    return value


def settings_for(url: str) -> Settings:
    """Settings of a service on the world's database.

    No deadline to speak of: the tests on this world read plans and count work, and the
    deadline would make them depend on how busy a shared machine is at that moment (one
    CI run stopped a 1x page at 5 s on PostgreSQL; three runs after it served it at once).
    """
    return Settings(
        database_url=url,
        secret_keys=(SECRET,),
        policy_dir=POLICIES,
        graphiql=False,
        request_timeout=60.0,
    )


async def _migrate_and_bootstrap(url: str) -> tuple[str, str]:
    """The schema and the bootstrapped environment and admin: (environment id, admin id)."""
    state = AppState.build(settings_for(url))
    await state.start()
    try:
        async with state.db.read() as session:
            admin = await session.scalar(select(col(User.id)).where(col(User.name_key) == "admin"))
        return state.default_environment_id, str(admin)
    finally:
        await state.stop()


def migrate(url: str) -> None:
    """Bring a seeded database to the newest schema (a cached seed, say)."""
    asyncio.run(_migrate_and_bootstrap(url))


def seed(url: str, scale: int, anchor: datetime) -> World:
    """Migrate and bootstrap an empty database, then insert the world at `scale`."""
    environment_id, admin_id = asyncio.run(_migrate_and_bootstrap(url))
    world, rows = world_rows(scale, environment_id, admin_id, anchor)
    if url.startswith("postgresql"):
        asyncio.run(_copy_postgres(url, rows))
    else:
        _insert_sqlite(make_url(url).database or "", rows)
    return world


def _insert_sqlite(path: str, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        for table, values in rows.items():  # parents first
            columns, marks = ", ".join(COLUMNS[table]), ", ".join("?" * len(COLUMNS[table]))
            db.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                (tuple(_sqlite_value(value) for value in row) for row in values),
            )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


async def _copy_postgres(url: str, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            for table, values in rows.items():
                await connection.copy_records_to_table(
                    table, records=values, columns=list(COLUMNS[table])
                )
        # Plans read statistics: autovacuum would gather them soon after such a load.
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


_BOTH = "runs(status: [SUCCEEDED, FAILED], first: 50)"


def page_requests(world: World) -> list[Request]:
    """The requests whose cost must not grow with the data, as the world's viewers send
    them: PAGES and the queue as `operator`, the trail as `admin`; then the same pages as
    an administrator, their second pages, and the other filters of runs and the trail."""
    ids = {"g": world.queue_group_id, "b": world.browsed_group_id}
    operator, admin = world.operator_id, world.admin_id
    requests = [
        Request(label, query, ids, as_user=admin if "admin" in label else operator)
        for label, query in PAGES.items()
    ]
    requests.append(Request(QUEUE, QUEUE_PAGE, {"g": world.queue_group_id}, as_user=operator))
    for label, query in PAGES.items():
        if "admin" not in label:
            requests.append(Request(f"{label}, admin", query, ids, as_user=admin))
    # A viewer who sees one group among all: their lists are read from their side.
    narrow = ("machineGroups(first: 50)", "machines(first: 50)", "runs(first: 50)")
    for label in (*narrow, "runs(status: FAILED, first: 50)"):
        requests.append(Request(f"{label}, narrow", PAGES[label], {}, as_user=world.narrow_id))
    requests.append(
        _listing("runs(status: [SUCCEEDED, FAILED]), narrow", _BOTH, {}, world.narrow_id)
    )
    # Other filters, with their variables: $g the queue group (the browsed one for the
    # trail), $m the agent's machine, $u the operator.
    others = {
        "runs(status: [SUCCEEDED, FAILED])": _BOTH,
        "runs(groupId, status: [RUNNING])": "runs(groupId: $g, status: [RUNNING], first: 50)",
        "runs(machineId)": "runs(machineId: $m, first: 50)",
        "runs(machineId, status: [SUCCEEDED])": "runs(machineId: $m, status: [SUCCEEDED])",
        "auditLog(recordId)": "auditLog(recordId: $g, first: 50)",
        "auditLog(userId)": "auditLog(userId: $u, first: 50)",
        "auditLog(kind: [...])": "auditLog(kind: [GRANT_SHARED, GRANT_REVOKED], first: 50)",
    }
    for label, field in others.items():
        trail = label.startswith("auditLog")
        variables = {
            "g": world.browsed_group_id if trail else world.queue_group_id,
            "m": world.agent_machine_id,
            "u": world.operator_id,
        }
        requests.append(_listing(label, field, variables, admin if trail else operator))
    return requests


def _listing(label: str, field: str, variables: dict[str, str], user: str) -> Request:
    """A list's ids and count, declaring the variables `field` uses (of `variables`)."""
    used = {name: value for name, value in variables.items() if f"${name}" in field}
    declared = ", ".join(f"${name}: ID!" for name in used)
    head = f"query({declared}) " if declared else ""
    query = f"{head}{{ {field} {{ totalCount edges {{ node {{ id }} }} }} }}"
    return Request(label, query, used, as_user=user)


def second_pages(world: World, cursors: dict[str, str]) -> list[Request]:
    """The page after each first page of PAGES that takes no variable (label: the
    endCursor of its first page)."""
    return [
        Request(
            f"{label}, page 2",
            "query($after: String) " + query.replace("first: 50)", "first: 50, after: $after)"),
            {"after": cursors[label]},
            as_user=world.admin_id if "admin" in label else world.operator_id,
        )
        for label, query in PAGES.items()
        if label in cursors and query.startswith("{")
    ]
