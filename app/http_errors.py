"""HTTP answers given before any GraphQL runs, in the shape of a GraphQL error."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

BAD_REQUEST = 400
UNAUTHORIZED = 401
NOT_FOUND = 404
METHOD_NOT_ALLOWED = 405
NOT_ACCEPTABLE = 406

ENDPOINT = "/graphql"
# Where live streams are served, said wherever one cannot be.
STREAMS = (
    f"subscriptions are served over WebSocket at ws://<host>{ENDPOINT} (graphql-transport-ws,"
    ' token in the connection_init payload as {"authorization": "Bearer <token>"}), or over'
    f" HTTP POST to {ENDPOINT} with `Accept: multipart/mixed`"
)

_DEFAULT_CODES = {
    BAD_REQUEST: "BAD_REQUEST",
    NOT_FOUND: "NOT_FOUND",
    METHOD_NOT_ALLOWED: "METHOD_NOT_ALLOWED",
    NOT_ACCEPTABLE: "NOT_ACCEPTABLE",
}
# Strawberry answers these with a line of plain text; here each is said in the shape of
# a GraphQL error, with what to do instead. Keyed by Strawberry's own text.
_STRAWBERRY_REASONS: dict[str, tuple[str, str]] = {
    "Unsupported content type": (
        "send the request as JSON with `Content-Type: application/json`"
        " (or a query as a GET query string)",
        "UNSUPPORTED_CONTENT_TYPE",
    ),
    "Batching is not enabled": (
        "send one operation per request: a JSON array of operations (a batch) is not accepted",
        "BATCH_NOT_ACCEPTED",
    ),
    "No GraphQL query found in the request": (
        'the request holds no GraphQL query: send {"query": "..."} as JSON, or ?query=... with GET',
        "QUERY_MISSING",
    ),
    "mutations are not allowed when using GET": (
        "mutations need POST: a GET request may only run queries",
        "METHOD_NOT_ALLOWED",
    ),
    "GraphQL only supports GET and POST requests.": (
        f"{ENDPOINT} answers GET (queries) and POST (any operation) only",
        "METHOD_NOT_ALLOWED",
    ),
    "Not Found": (
        f"nothing is served here to browsers (GraphiQL is off): send GraphQL requests to"
        f" {ENDPOINT} as JSON",
        "NOT_FOUND",
    ),
    "Can't get GraphQL operation type": (
        "the document holds no operation to run",
        "OPERATION_MISSING",
    ),
    "The GraphQL operation's `query` must be a string or null, if provided.": (
        "`query` must be a string: the GraphQL document",
        "BAD_REQUEST",
    ),
    "The GraphQL operation's `variables` must be an object or null, if provided.": (
        "`variables` must be a JSON object of variable names and values",
        "BAD_REQUEST",
    ),
    "The GraphQL operation's `extensions` must be an object or null, if provided.": (
        "`extensions` must be a JSON object",
        "BAD_REQUEST",
    ),
}


def error_response(
    status_code: int, message: str, code: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """`{"errors": [{"message", "extensions": {"code"}}]}` with an HTTP error status."""
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status_code,
        headers=headers,
    )


def strawberry_refusal(status_code: int, reason: str) -> JSONResponse:
    """Strawberry's plain-text refusal of a request, said as a GraphQL error: its known
    reasons rewritten to say what to do, any other kept as it is."""
    known = _STRAWBERRY_REASONS.get(reason)
    message, code = known or (reason, _DEFAULT_CODES.get(status_code, "BAD_REQUEST"))
    # RFC 9110: a 405 names the methods that are served.
    allowed = {"Allow": "GET, POST"} if status_code == METHOD_NOT_ALLOWED else None
    return error_response(status_code, message, code, allowed)
