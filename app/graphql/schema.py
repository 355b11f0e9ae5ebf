"""The one place the GraphQL schema is assembled from the features."""

from __future__ import annotations

import strawberry
from strawberry.tools import merge_types

from app.graphql.admin import AdminMutation, AdminQuery
from app.graphql.groups import GroupMutation, GroupQuery
from app.graphql.machines import MachineMutation, MachineQuery

Query = merge_types("Query", (AdminQuery, GroupQuery, MachineQuery))
Mutation = merge_types("Mutation", (GroupMutation, MachineMutation, AdminMutation))

schema = strawberry.Schema(query=Query, mutation=Mutation)


def schema_sdl() -> str:
    """The schema in SDL, as committed in `schema.graphql`."""
    return schema.as_str() + "\n"
