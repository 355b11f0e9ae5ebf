"""HTTP answers given before any GraphQL runs, in the shape of a GraphQL error."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse


def error_response(
    status_code: int, message: str, code: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """`{"errors": [{"message", "extensions": {"code"}}]}` with an HTTP error status."""
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status_code,
        headers=headers,
    )
