"""Per-request DataLoaders: a page of records costs one statement per field, not per item."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader

from app.db.engine import Database
from app.db.models import Environment, Machine, MachineGroup, User
from app.domain import batches
from app.domain.enums import AccessLevel, RecordKind

K = TypeVar("K")
V = TypeVar("V")


class Loaders:
    """The loaders of one request, each reading through its own short read session."""

    def __init__(self, db: Database, viewer_id: str | None, default_environment_id: str) -> None:
        self._db = db
        self._default_environment_id = default_environment_id
        self.roles = self._loader(batches.roles_of)
        self.running_runs = self._loader(batches.running_runs)
        self.users: DataLoader[str, User | None] = self._rows(User)
        self.environments: DataLoader[str, Environment | None] = self._rows(Environment)
        self.groups: DataLoader[str, MachineGroup | None] = self._rows(MachineGroup)
        self.machines: DataLoader[str, Machine | None] = self._rows(Machine)
        self.machine_counts = self._loader(batches.machine_counts)
        self.run_counts = self._loader(batches.run_counts)
        self.group_machines = self._loader(batches.machines_of)
        self.group_grants: DataLoader[str, list[tuple[User, AccessLevel]]] = self._loader(
            lambda s, ids: batches.grants_of(s, RecordKind.MACHINE_GROUP, ids)
        )
        self.group_levels = self._levels(viewer_id, RecordKind.MACHINE_GROUP)
        self.machine_levels = self._levels(viewer_id, RecordKind.MACHINE)

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
