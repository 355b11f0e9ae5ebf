"""GraphQL errors: a rule's answer is shown as it is; anything unexpected is masked.

An unexpected exception (a bug, an outage) may carry SQL, paths or secrets in its
message, so the client gets a generic message and the request id, and the server log
gets the exception with that same id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import MaskErrors, SchemaExtension

from app.db.engine import NulCharacterError
from app.deadline import RequestCut
from app.domain.enums import ErrorCode
from app.domain.errors import DomainError
from app.logs import current_request_id
from app.metrics import Metrics

log = logging.getLogger("app.errors")
GENERIC_MESSAGE = "Unexpected error"
INTERNAL = "INTERNAL_SERVER_ERROR"


def is_unexpected(error: GraphQLError) -> bool:
    """Whether an error comes from an exception nobody raised on purpose.

    Rule errors (DomainError) and GraphQL's own errors (syntax, validation, limits,
    variable coercion) are answers meant for the client, and so is a request cut short
    (logged once, by app/deadline.py); anything else is not.
    """
    original = error.original_error
    expected = (DomainError, GraphQLError, NulCharacterError, RequestCut)
    return original is not None and not isinstance(original, expected)


def report_errors(errors: list[GraphQLError], metrics: Metrics, hide_suggestions: bool) -> None:
    """Log the unexpected errors with the request id; label the rule errors with their code.

    Runs before `MaskUnexpectedErrors`, so the log gets the original exception.
    """
    for error in errors:
        original = error.original_error
        if isinstance(original, DomainError):
            error.extensions = {**(error.extensions or {}), "code": original.code.value}
        elif isinstance(original, NulCharacterError):
            error.extensions = {**(error.extensions or {}), "code": ErrorCode.VALIDATION.value}
        elif isinstance(original, RequestCut):
            error.extensions = {**(error.extensions or {}), "code": original.code}
        elif is_unexpected(error):
            metrics.unexpected_errors.inc()
            log.error(
                "unexpected error at %s: %s",
                ".".join(map(str, error.path or ())) or "(operation)",
                original,
                exc_info=original,
                extra={"request_id": current_request_id()},
            )
        if hide_suggestions and "Did you mean" in error.message:
            # Strawberry strips suggestions for unknown fields only; arguments, enum
            # values and types suggest names too, and production does not tell them.
            error.message = error.message.split(" Did you mean")[0]


class MaskUnexpectedErrors(MaskErrors):
    """Strawberry's MaskErrors, for unexpected errors only, with the request id added."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=is_unexpected, error_message=GENERIC_MESSAGE)

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        """The generic error, naming the request id the server logged it under."""
        masked = super().anonymise_error(error)
        request_id = current_request_id()
        if request_id:
            masked.message = f"{GENERIC_MESSAGE} (request id {request_id})"
        masked.extensions = {"code": INTERNAL, "requestId": request_id}
        return masked


class OperationMetrics(SchemaExtension):
    """Counts operations by type, and those answered with errors."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_operation(self) -> Iterator[None]:
        """Count the operation once it is answered."""
        try:
            yield
        except Exception:
            self._count(failed=True)  # raised through the operation: a request cut short
            raise
        context = self.execution_context
        self._count(bool(context.pre_execution_errors or getattr(context.result, "errors", None)))

    def _count(self, failed: bool) -> None:
        try:
            kind = self.execution_context.operation_type.value
        except (RuntimeError, AttributeError):  # unparsable or ambiguous document
            kind = "unknown"
        self.metrics.operations.labels(kind).inc()
        if failed:
            self.metrics.errors.labels(kind).inc()
