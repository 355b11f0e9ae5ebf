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

from app.authz.reload import watch_policies
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
        tasks = [
            asyncio.create_task(run_sweeper(state, state.settings.sweep_interval)),
            asyncio.create_task(
                watch_policies(
                    state.services.policy, state.services.clock, state.record_policy_outcome
                )
            ),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
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
