"""Per-request DataLoaders: a page of records costs one statement per field, not per item."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import cached_property
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from app.db.engine import Database
from app.db.models import Environment, Machine, MachineGroup, Run, User
from app.domain import batches
from app.domain.enums import AccessLevel, RecordKind, SecurityRole

K = TypeVar("K")
V = TypeVar("V")


class Loaders:
    """The loaders of one request, each reading through its own short read session.

    Each loader is made on first use: a subscription renews its loaders for every message,
    and most messages use one or two of them.
    """

    def __init__(self, db: Database, viewer_id: str | None, default_environment_id: str) -> None:
        self._db = db
        self._viewer_id = viewer_id
        self._default_environment_id = default_environment_id

    @cached_property
    def roles(self) -> DataLoader[str, dict[str, frozenset[SecurityRole]]]:
        return self._loader(batches.roles_of)

    @cached_property
    def running_runs(self) -> DataLoader[str, Run | None]:
        return self._loader(batches.running_runs)

    @cached_property
    def users(self) -> DataLoader[str, User | None]:
        return self._rows(User)

    @cached_property
    def environments(self) -> DataLoader[str, Environment | None]:
        return self._rows(Environment)

    @cached_property
    def groups(self) -> DataLoader[str, MachineGroup | None]:
        return self._rows(MachineGroup)

    @cached_property
    def machines(self) -> DataLoader[str, Machine | None]:
        return self._rows(Machine)

    @cached_property
    def machine_counts(self) -> DataLoader[str, int]:
        return self._loader(batches.machine_counts)

    @cached_property
    def run_counts(self) -> DataLoader[str, tuple[int, int]]:
        return self._loader(batches.run_counts)

    @cached_property
    def group_machines(self) -> DataLoader[str, list[Machine]]:
        return self._loader(batches.machines_of)

    @cached_property
    def group_grants(self) -> DataLoader[str, list[tuple[User, AccessLevel]]]:
        return self._loader(lambda s, ids: batches.grants_of(s, RecordKind.MACHINE_GROUP, ids))

    @cached_property
    def group_levels(self) -> DataLoader[str, AccessLevel | None]:
        return self._levels(self._viewer_id, RecordKind.MACHINE_GROUP)

    @cached_property
    def machine_levels(self) -> DataLoader[str, AccessLevel | None]:
        return self._levels(self._viewer_id, RecordKind.MACHINE)

    def environment_id(self, environment_id: str | None) -> str:
        """An optional `environmentId` argument, defaulting to the default environment."""
        return environment_id or self._default_environment_id

    def _loader(
        self, fetch: Callable[[AsyncSession, Sequence[K]], Awaitable[Sequence[V]]]
    ) -> DataLoader[K, V]:
        async def load(keys: list[K]) -> Sequence[V]:
            async with self._db.read() as session:
                return await fetch(session, keys)

        return DataLoader(load_fn=load)

    def _rows(self, model: type[batches.Row]) -> DataLoader[str, batches.Row | None]:
        return self._loader(lambda s, ids: batches.rows_by_id(s, model, ids))

    def _levels(
        self, viewer_id: str | None, kind: RecordKind
    ) -> DataLoader[str, AccessLevel | None]:
        async def none(_s: AsyncSession, ids: Sequence[str]) -> list[AccessLevel | None]:
            return [None] * len(ids)

        if viewer_id is None:
            return self._loader(none)
        return self._loader(lambda s, ids: batches.granted_levels(s, viewer_id, kind, ids))
