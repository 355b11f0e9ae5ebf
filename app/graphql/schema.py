"""The one place the GraphQL schema is assembled from the features."""

from __future__ import annotations

import strawberry
from strawberry.tools import merge_types

from app.graphql.admin import AdminMutation, AdminQuery
from app.graphql.audit import AuditQuery
from app.graphql.groups import GroupMutation, GroupQuery
from app.graphql.machines import MachineMutation, MachineQuery
from app.graphql.runs import RunMutation, RunQuery
from app.graphql.subscriptions import Subscription

Query = merge_types("Query", (AdminQuery, GroupQuery, MachineQuery, RunQuery, AuditQuery))
Mutation = merge_types("Mutation", (GroupMutation, MachineMutation, RunMutation, AdminMutation))

schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)


def schema_sdl() -> str:
    """The schema in SDL, as committed in `schema.graphql`."""
    return schema.as_str() + "\n"
