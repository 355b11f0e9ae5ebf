"""MG_REQUEST_TIMEOUT for queries and mutations: a request cut short answers one error."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from app.deadline import RequestCut, bounded

# Cancelled mid-execution, graphql-core leaves behind coroutines it had made but not
# started yet (a list's items, to be gathered by a task that never ran), and Python warns
# as each is collected. They hold nothing and are expected after a cut; other coroutines
# never awaited still warn. (pyproject.toml repeats this filter for the tests.)
UNSTARTED_AFTER_A_CUT = r"coroutine '(Executor|GraphQLCoreConverter)\."
warnings.filterwarnings("ignore", UNSTARTED_AFTER_A_CUT, RuntimeWarning)


class RequestDeadline(SchemaExtension):
    """Runs an operation's execution `bounded` by the deadline (subscriptions excepted:
    they last as long as their client listens).

    Past it, or once the database is too busy to serve it, the execution is cancelled
    and the whole request answers one error, with the code in `extensions.code`, in
    place of whatever its fields had resolved.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def on_execute(self) -> AsyncIterator[None]:
        """Execute within the deadline."""
        if self.execution_context.operation_type is OperationType.SUBSCRIPTION:
            yield
            return
        try:
            async with bounded(self.seconds):
                yield
        except RequestCut as cut:
            # Raised, it replaces the execution's result (Strawberry answers it as the
            # request's only error, with data null).
            raise GraphQLError(cut.message, extensions={"code": cut.code}) from None
