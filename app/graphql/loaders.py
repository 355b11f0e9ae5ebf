"""Per-request DataLoaders: a page of records costs one statement per field, not per item."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator, Hashable, Iterable, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from app.db.engine import Database
from app.db.models import Connection, Environment, Machine, MachineGroup, Run, User
from app.domain import batches, queue
from app.domain.access import Seen
from app.domain.caller import Principal, Viewer
from app.domain.clock import Clock
from app.domain.enums import AccessLevel, RecordKind, SecurityRole
from app.domain.pages import check_page_size
from app.domain.sight import Sight

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
Fetch = Callable[[AsyncSession, Sequence[K]], Awaitable[Sequence[V]]]
# A Sight's decision on a list of records, reading its facts in the session given.
Decide = Callable[[Sequence[T], AsyncSession], Awaitable[list[Seen[T] | None]]]


class SessionLoader(DataLoader[K, V]):
    """A DataLoader whose batch read can also run inside a caller's read session."""

    def __init__(
        self, db: Database, fetch: Fetch[K, V], key: Callable[[K], Hashable] | None = None
    ) -> None:
        self.fetch = fetch

        async def load(keys: list[K]) -> Sequence[V]:
            async with db.read() as session:
                return await fetch(session, keys)

        super().__init__(load_fn=load, cache_key_fn=key)

    def prime_pairs(self, pairs: Iterable[tuple[K, V]]) -> None:
        """Cache these values of these keys, which need not be hashable (rows keyed by
        their id): later `load` calls are answered from the cache."""
        loop = asyncio.get_running_loop()
        for key, value in pairs:
            if self.cache_map.get(key) is None:
                known: asyncio.Future[V] = loop.create_future()
                known.set_result(value)
                self.cache_map.set(key, known)

    async def prime_from(self, session: AsyncSession, keys: Sequence[K]) -> None:
        """Load `keys` now, in `session`, so later `load` calls are answered from the cache."""
        missing = list(dict.fromkeys(key for key in keys if self.cache_map.get(key) is None))
        if missing:
            self.prime_many(dict(zip(missing, await self.fetch(session, missing), strict=True)))


class Later(Generic[V, T]):
    """A field's value read only if the query selects it.

    graphql-core awaits an awaitable field value when it reads the field; only then is
    `load` called (DataLoader batches the loads of that moment) and `shape` applied. A
    type can so hold every field as plain data, which graphql-core reads without a
    resolver call, and still load nothing that is not asked for.
    """

    __slots__ = ("_load", "_shape")

    def __init__(self, load: Callable[[], Awaitable[V]], shape: Callable[[V], T]) -> None:
        self._load = load
        self._shape = shape

    def __await__(self) -> Generator[Any, None, T]:
        return self._value().__await__()

    async def _value(self) -> T:
        return self._shape(await self._load())


class Loaders:
    """The loaders of one request, each reading through its own short read session.

    Loaders that hand out records (`seen_*`, `running_runs`) give only what the
    request's principal may see, decided a batch at a time by its `Sight`; the others
    read facts the types need and hand out no record.

    Each loader is made on first use: a subscription renews its loaders for every message,
    and most messages use one or two of them.
    """

    def __init__(
        self,
        db: Database,
        principal: Principal | None,
        default_environment_id: str,
        clock: Clock,
    ) -> None:
        self._db = db
        self._viewer_id = principal.id if isinstance(principal, Viewer) else None
        self._default_environment_id = default_environment_id
        self.sight = Sight(db, principal)
        self._clock = clock

    @cached_property
    def roles(self) -> SessionLoader[str, dict[str, frozenset[SecurityRole]]]:
        return self._loader(batches.roles_of)

    @cached_property
    def running_runs(self) -> SessionLoader[str, Seen[Run] | None]:
        async def fetch(session: AsyncSession, ids: Sequence[str]) -> list[Seen[Run] | None]:
            runs = await batches.running_runs(session, ids)
            return await _decided(self.sight.runs, runs, session)

        return self._loader(fetch)

    @cached_property
    def seen_groups(self) -> SessionLoader[str, Seen[MachineGroup] | None]:
        return self._seen(MachineGroup, self.sight.groups)

    @cached_property
    def seen_machines(self) -> SessionLoader[str, Seen[Machine] | None]:
        return self._seen(Machine, self.sight.machines)

    @cached_property
    def seen_runs(self) -> SessionLoader[str, Seen[Run] | None]:
        return self._seen(Run, self.sight.runs)

    @cached_property
    def seen_connections(self) -> SessionLoader[str, Seen[Connection] | None]:
        return self._seen(Connection, self.sight.connections)

    @cached_property
    def users(self) -> SessionLoader[str, User | None]:
        return self._rows(User)

    @cached_property
    def environments(self) -> SessionLoader[str, Environment | None]:
        return self._rows(Environment)

    @cached_property
    def group_rows(self) -> SessionLoader[str, MachineGroup | None]:
        """Groups as facts of what the viewer sees (a machine's maintenance, its level);
        handed out only through `seen_groups`."""
        return self._rows(MachineGroup)

    @cached_property
    def machine_counts(self) -> SessionLoader[str, int]:
        return self._loader(batches.machine_counts)

    @cached_property
    def run_counts(self) -> SessionLoader[str, tuple[int, int]]:
        return self._loader(batches.run_counts)

    @cached_property
    def group_queues(self) -> SessionLoader[tuple[str, int | None], list[Run]]:
        """Keyed by (group id, first): a group's queue as one `queue(first:)` shows it.
        Its runs come in dispatch order, the nth at position n: their positions are known
        without a statement of their own."""

        async def fetch(
            session: AsyncSession, keys: Sequence[tuple[str, int | None]]
        ) -> list[list[Run]]:
            queues = await _group_queues(session, keys)
            self.queue_positions.prime_pairs(
                (run, place) for runs in queues for place, run in enumerate(runs, start=1)
            )
            return queues

        return self._loader(fetch)

    @cached_property
    def queue_positions(self) -> SessionLoader[Run, int | None]:
        """Keyed by run id (the loader is given the run, whose queue it ranks in)."""
        return SessionLoader(self._db, queue.queue_positions, key=_run_id)

    @cached_property
    def estimated_starts(self) -> DataLoader[Run, datetime | None]:
        """Keyed by run id; the positions come from `queue_positions` (read once when a
        query asks for both), and no connection is held while they are read."""

        async def estimate(runs: list[Run]) -> list[datetime | None]:
            positions = await self.queue_positions.load_many(runs)
            async with self._db.read() as session:
                return await queue.estimated_starts(session, runs, positions, self._clock.now())

        return DataLoader(load_fn=estimate, cache_key_fn=_run_id)

    @cached_property
    def group_machines(self) -> SessionLoader[str, list[Machine]]:
        return self._loader(batches.machines_of)

    @cached_property
    def group_grants(self) -> SessionLoader[str, list[tuple[User, AccessLevel]]]:
        return self._loader(lambda s, ids: batches.grants_of(s, RecordKind.MACHINE_GROUP, ids))

    @cached_property
    def group_levels(self) -> SessionLoader[str, AccessLevel | None]:
        return self._levels(self._viewer_id, RecordKind.MACHINE_GROUP)

    @cached_property
    def machine_levels(self) -> SessionLoader[str, AccessLevel | None]:
        return self._levels(self._viewer_id, RecordKind.MACHINE)

    def environment_id(self, environment_id: str | None) -> str:
        """An optional `environmentId` argument, defaulting to the default environment."""
        return environment_id or self._default_environment_id

    def _loader(self, fetch: Fetch[K, V]) -> SessionLoader[K, V]:
        return SessionLoader(self._db, fetch)

    def _rows(self, model: type[batches.Row]) -> SessionLoader[str, batches.Row | None]:
        return self._loader(lambda s, ids: batches.rows_by_id(s, model, ids))

    def _seen(
        self, model: type[batches.Row], decide: Decide[batches.Row]
    ) -> SessionLoader[str, Seen[batches.Row] | None]:
        async def fetch(
            session: AsyncSession, ids: Sequence[str]
        ) -> list[Seen[batches.Row] | None]:
            return await _decided(decide, await batches.rows_by_id(session, model, ids), session)

        return self._loader(fetch)

    def _levels(
        self, viewer_id: str | None, kind: RecordKind
    ) -> SessionLoader[str, AccessLevel | None]:
        async def none(_s: AsyncSession, ids: Sequence[str]) -> list[AccessLevel | None]:
            return [None] * len(ids)

        if viewer_id is None:
            return self._loader(none)
        return self._loader(lambda s, ids: batches.granted_levels(s, viewer_id, kind, ids))


async def _decided(
    decide: Decide[T], rows: Sequence[T | None], session: AsyncSession
) -> list[Seen[T] | None]:
    """Rows, missing ones included, with the ones the principal may not see as None."""
    found = [row for row in rows if row is not None]
    verdicts = iter(await decide(found, session))
    return [next(verdicts) if row is not None else None for row in rows]


def _run_id(run: Run) -> str:
    return run.id


async def _group_queues(
    session: AsyncSession, keys: Sequence[tuple[str, int | None]]
) -> list[list[Run]]:
    """Each (group, first)'s queued runs: one statement for the longest page asked for."""
    sizes = [check_page_size(first) for _group_id, first in keys]
    group_ids = list(dict.fromkeys(group_id for group_id, _first in keys))
    queues = await queue.queued_runs_of(session, group_ids, max(sizes))
    by_group = dict(zip(group_ids, queues, strict=True))
    return [by_group[group_id][:size] for (group_id, _first), size in zip(keys, sizes, strict=True)]
