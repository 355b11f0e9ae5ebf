"""Operational endpoints: `/healthz` (process up), `/readyz` (can serve), `/metrics`."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from app.state import AppState

UNAVAILABLE = 503


def probe_routes(state: AppState) -> list[Route]:
    """The three routes, answering without a token (they reveal no records)."""

    async def healthz(_request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_request: Request) -> Response:
        problem = await state.ready()
        if problem is not None:
            return JSONResponse({"ready": False, "reason": problem}, status_code=UNAVAILABLE)
        policy = state.services.policy
        return JSONResponse(
            {
                "ready": True,
                "policy": policy.table.checksum[:12],
                # A rejected edit leaves the previous policy in force: ready, but said.
                "policyError": policy.last_error,
            }
        )

    async def metrics(_request: Request) -> Response:
        async with state.db.read() as session:
            body = await state.metrics.scrape(session)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]
