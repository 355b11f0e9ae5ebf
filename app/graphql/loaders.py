"""Per-request DataLoaders: a page of records costs one statement per field, not per item."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Hashable, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from app.db.engine import Database
from app.db.models import Environment, Machine, MachineGroup, Run, User
from app.domain import batches, queue
from app.domain.clock import Clock
from app.domain.enums import AccessLevel, RecordKind, SecurityRole
from app.domain.pages import check_page_size

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
Fetch = Callable[[AsyncSession, Sequence[K]], Awaitable[Sequence[V]]]


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

    Each loader is made on first use: a subscription renews its loaders for every message,
    and most messages use one or two of them.
    """

    def __init__(
        self, db: Database, viewer_id: str | None, default_environment_id: str, clock: Clock
    ) -> None:
        self._db = db
        self._viewer_id = viewer_id
        self._default_environment_id = default_environment_id
        self._clock = clock

    @cached_property
    def roles(self) -> SessionLoader[str, dict[str, frozenset[SecurityRole]]]:
        return self._loader(batches.roles_of)

    @cached_property
    def running_runs(self) -> SessionLoader[str, Run | None]:
        return self._loader(batches.running_runs)

    @cached_property
    def users(self) -> SessionLoader[str, User | None]:
        return self._rows(User)

    @cached_property
    def environments(self) -> SessionLoader[str, Environment | None]:
        return self._rows(Environment)

    @cached_property
    def groups(self) -> SessionLoader[str, MachineGroup | None]:
        return self._rows(MachineGroup)

    @cached_property
    def machines(self) -> SessionLoader[str, Machine | None]:
        return self._rows(Machine)

    @cached_property
    def machine_counts(self) -> SessionLoader[str, int]:
        return self._loader(batches.machine_counts)

    @cached_property
    def run_counts(self) -> SessionLoader[str, tuple[int, int]]:
        return self._loader(batches.run_counts)

    @cached_property
    def group_queues(self) -> SessionLoader[tuple[str, int | None], list[Run]]:
        """Keyed by (group id, first): a group's queue as one `queue(first:)` shows it."""
        return self._loader(_group_queues)

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

    def _levels(
        self, viewer_id: str | None, kind: RecordKind
    ) -> SessionLoader[str, AccessLevel | None]:
        async def none(_s: AsyncSession, ids: Sequence[str]) -> list[AccessLevel | None]:
            return [None] * len(ids)

        if viewer_id is None:
            return self._loader(none)
        return self._loader(lambda s, ids: batches.granted_levels(s, viewer_id, kind, ids))


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
