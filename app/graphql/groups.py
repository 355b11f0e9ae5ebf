"""Machine groups: `machineGroups`, `machineGroup`, and the group mutations."""

from __future__ import annotations

import strawberry

from app.db import models
from app.domain import groups, passwords, sharing
from app.domain.environments import environment_id_of
from app.domain.group_facts import list_groups
from app.domain.visibility import visible_groups_filter
from app.graphql.context import Info
from app.graphql.mutation import attempt, check_first, shown
from app.graphql.paging import to_connection
from app.graphql.selection import selected_names
from app.graphql.types.common import MutationError, ShareLevel
from app.graphql.types.environment import UserType
from app.graphql.types.group import (
    FACT_FIELDS,
    AccessGrantType,
    MachineGroupConnection,
    MachineGroupEdge,
    MachineGroupType,
    prime_grants,
)


@strawberry.input
class CreateMachineGroupInput:
    environment_id: strawberry.ID | None = None
    name: str
    description: str | None = None


@strawberry.input
class UpdateMachineGroupInput:
    id: strawberry.ID
    name: str | None = None
    description: str | None = None


@strawberry.input
class ShareMachineGroupInput:
    group_id: strawberry.ID
    user_id: strawberry.ID
    access: ShareLevel


@strawberry.type
class MachineGroupPayload:
    machine_group: MachineGroupType | None
    errors: list[MutationError]

    @classmethod
    async def of(
        cls, info: Info, result: tuple[models.MachineGroup | None, list[MutationError]]
    ) -> MachineGroupPayload:
        """The payload of a group mutation."""
        group, errors = result
        seen = await shown(info.context.sight.groups, group)
        view = MachineGroupType.of(seen, info) if seen else None
        return cls(machine_group=view, errors=errors)


@strawberry.type
class DeletePayload:
    deleted_id: strawberry.ID | None
    errors: list[MutationError]

    @classmethod
    def of(cls, result: tuple[str | None, list[MutationError]]) -> DeletePayload:
        """The payload of a delete."""
        deleted, errors = result
        return cls(deleted_id=strawberry.ID(deleted) if deleted else None, errors=errors)


@strawberry.type
class GroupPasswordPayload:
    password: str | None
    errors: list[MutationError]


@strawberry.type
class AccessGrantPayload:
    grant: AccessGrantType | None
    errors: list[MutationError]

    @classmethod
    def of(cls, result: tuple[sharing.GrantView | None, list[MutationError]]) -> AccessGrantPayload:
        """The payload of a share or revoke."""
        grant, errors = result
        if grant is None:
            return cls(grant=None, errors=errors)
        return cls(
            grant=AccessGrantType(user=UserType.of(grant.user), access=grant.level), errors=errors
        )


@strawberry.type
class GroupQuery:
    @strawberry.field(description="The groups the viewer may see, by name.")
    async def machine_groups(
        self,
        info: Info,
        environment_id: strawberry.ID | None = None,
        first: int | None = 50,
        after: str | None = None,
    ) -> MachineGroupConnection:
        viewer = info.context.viewer
        fields = selected_names(info, "edges", "node")
        async with info.context.db.read() as session:
            environment = await environment_id_of(
                session, environment_id, info.context.app.default_environment_id
            )
            visible = visible_groups_filter(viewer, environment)
            listing = await list_groups(
                session, viewer.id, visible, first, after, with_facts=bool(FACT_FIELDS & fields)
            )
            await prime_grants(info, session, [seen.record for seen in listing.page.items], fields)
        return to_connection(
            listing.page,
            lambda seen: MachineGroupType.of(seen, info, listing.facts.get(seen.record.id)),
            MachineGroupEdge,
            MachineGroupConnection,
        )

    @strawberry.field
    async def machine_group(self, info: Info, id: strawberry.ID) -> MachineGroupType | None:
        info.context.viewer  # noqa: B018  (agents may not look groups up)
        group = await info.context.loaders.seen_groups.load(id)
        return MachineGroupType.of(group, info) if group else None


@strawberry.type
class GroupMutation:
    @strawberry.mutation
    async def create_machine_group(
        self, info: Info, input: CreateMachineGroupInput
    ) -> MachineGroupPayload:
        return await MachineGroupPayload.of(
            info,
            await attempt(
                info,
                lambda s, c: groups.create_group(
                    s,
                    c,
                    environment_id=input.environment_id,
                    name=input.name,
                    description=input.description,
                ),
            ),
        )

    @strawberry.mutation
    async def update_machine_group(
        self, info: Info, input: UpdateMachineGroupInput
    ) -> MachineGroupPayload:
        return await MachineGroupPayload.of(
            info,
            await attempt(
                info,
                lambda s, c: groups.update_group(
                    s, c, input.id, name=input.name, description=input.description
                ),
            ),
        )

    @strawberry.mutation(description="Only an empty group can be deleted.")
    async def delete_machine_group(self, info: Info, id: strawberry.ID) -> DeletePayload:
        return DeletePayload.of(await attempt(info, lambda s, c: groups.delete_group(s, c, id)))

    @strawberry.mutation(description="The new password is returned once, never again.")
    async def regenerate_machine_group_password(
        self, info: Info, id: strawberry.ID
    ) -> GroupPasswordPayload:
        # Hashed between a read that checks and the short write that stores, so that no
        # other write waits behind Argon2id; a refused caller costs no hash at all.
        _, errors = await check_first(info, lambda s, c: groups.may_regenerate_password(s, c, id))
        if errors:
            return GroupPasswordPayload(password=None, errors=errors)
        password, password_hash = await passwords.new_password()
        _, errors = await attempt(
            info, lambda s, c: groups.regenerate_password(s, c, id, password_hash)
        )
        return GroupPasswordPayload(password=None if errors else password, errors=errors)

    @strawberry.mutation
    async def set_machine_group_maintenance(
        self, info: Info, id: strawberry.ID, enabled: bool
    ) -> MachineGroupPayload:
        return await MachineGroupPayload.of(
            info, await attempt(info, lambda s, c: groups.set_maintenance(s, c, id, enabled))
        )

    @strawberry.mutation
    async def share_machine_group(
        self, info: Info, input: ShareMachineGroupInput
    ) -> AccessGrantPayload:
        return AccessGrantPayload.of(
            await attempt(
                info,
                lambda s, c: sharing.share(
                    s, c, input.group_id, input.user_id, input.access.access_level, machine=False
                ),
            )
        )

    @strawberry.mutation
    async def revoke_machine_group_access(
        self, info: Info, group_id: strawberry.ID, user_id: strawberry.ID
    ) -> AccessGrantPayload:
        return AccessGrantPayload.of(
            await attempt(info, lambda s, c: sharing.revoke(s, c, group_id, user_id, machine=False))
        )
