"""The one place the GraphQL schema is assembled from the features, and hardened."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from app.graphql.admin import AdminMutation, AdminQuery
from app.graphql.agent_channel import AgentSubscription
from app.graphql.audit import AuditQuery
from app.graphql.cost import QueryCostLimiter
from app.graphql.deadline import RequestDeadline
from app.graphql.errors import MaskUnexpectedErrors, OperationMetrics, report_errors
from app.graphql.groups import GroupMutation, GroupQuery
from app.graphql.machines import MachineMutation, MachineQuery
from app.graphql.runs import RunMutation, RunQuery
from app.graphql.subscriptions import LiveSubscription
from app.metrics import Metrics
from app.settings import Settings

DOCUMENT_CACHE_SIZE = 512  # distinct documents: front ends and agents send a handful

Query = merge_types("Query", (AdminQuery, GroupQuery, MachineQuery, RunQuery, AuditQuery))
Mutation = merge_types("Mutation", (GroupMutation, MachineMutation, RunMutation, AdminMutation))
Subscription = merge_types("Subscription", (LiveSubscription, AgentSubscription))

# The bare schema: its SDL is the public API (`schema.graphql`); services use `build_schema`.
schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)


class ServiceSchema(strawberry.Schema):
    """The schema a running service executes: its errors are reported, not just logged."""

    def __init__(self, metrics: Metrics, hide_suggestions: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.hide_suggestions = hide_suggestions

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log unexpected errors with the request id (instead of every error, as by default)."""
        report_errors(errors, self.metrics, self.hide_suggestions)


def build_schema(settings: Settings, metrics: Metrics) -> strawberry.Schema:
    """The schema with the abuse limits of `settings`; production hides the schema's shape."""
    # Strawberry's depth and alias limiters build their validation rules when constructed;
    # built once here, the rules are added to each request by one light extension.
    fixed_rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules,
    ]
    extensions: list[Callable[[], SchemaExtension]] = [
        partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
        # Parsing and validating a document are most of a small request's CPU; both
        # depend on the document's text only, so they are done once per distinct text.
        partial(ParserCache, maxsize=DOCUMENT_CACHE_SIZE),
        partial(AddValidationRules, fixed_rules),
        partial(ValidationCache, maxsize=DOCUMENT_CACHE_SIZE),
        partial(QueryCostLimiter, settings.max_query_cost, settings.max_page_size),
        MaskUnexpectedErrors,
        partial(OperationMetrics, metrics),
        partial(RequestDeadline, settings.request_timeout),
    ]
    if settings.production:
        extensions.append(DisableIntrospection)
    return ServiceSchema(
        metrics,
        settings.production,
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        # Batching (a list of operations in one request) stays off: batching_config=None.
        config=StrawberryConfig(disable_field_suggestions=settings.production),
    )


def schema_sdl() -> str:
    """The schema in SDL, as committed in `schema.graphql`."""
    return schema.as_str() + "\n"
