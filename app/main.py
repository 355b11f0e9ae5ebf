"""The ASGI application: Starlette serving the GraphQL view at `/graphql`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from app.domain.clock import Clock
from app.graphql.view import GraphQLView
from app.queue.sweeper import run_sweeper
from app.settings import Settings, load_settings
from app.state import AppState


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> Starlette:
    """Build the service; the database is migrated and bootstrapped at start-up."""
    state = AppState.build(settings or load_settings(), clock)
    view = GraphQLView(state)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await state.start()
        sweeper = asyncio.create_task(run_sweeper(state, state.settings.sweep_interval))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await state.stop()

    async def healthz(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/graphql", view, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", view),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )
    app.state.machine_groups = state
    return app
