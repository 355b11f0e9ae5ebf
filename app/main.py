"""The ASGI application: Starlette serving the GraphQL view at `/graphql` and the web
console at `/console`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route, WebSocketRoute

from app.authz.reload import watch_policies
from app.body_limit import BodySizeLimit
from app.db.engine import keep_checkpointing
from app.domain.clock import Clock
from app.graphql.view import GraphQLView
from app.logs import REQUEST_ID_HEADER, RequestIdMiddleware
from app.probes import probe_routes
from app.queue.sweeper import run_sweeper
from app.settings import Settings, load_settings
from app.state import AppState
from app.web import console_routes


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> Starlette:
    """Build the service; the database is migrated and bootstrapped at start-up."""
    state = AppState.build(settings or load_settings(), clock)
    view = GraphQLView(state)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await state.start()
        tasks = [
            asyncio.create_task(run_sweeper(state.hub, state.settings.sweep_interval)),
            asyncio.create_task(state.channels.keep_present()),
            asyncio.create_task(keep_checkpointing(state.db)),
            asyncio.create_task(view.sockets.watch_forever()),
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
            await state.channels.drain()
            await state.stop()

    app = Starlette(
        routes=[
            # Every method reaches the view, so that the ones GraphQL does not serve get
            # a GraphQL error body (405, `Allow: GET, POST`), not Starlette's plain text.
            Route("/graphql", view),
            WebSocketRoute("/graphql", view),
            *probe_routes(state),
            *console_routes(),
        ],
        middleware=_middleware(state.settings),
        lifespan=lifespan,
    )
    app.state.machine_groups = state
    return app


def _middleware(settings: Settings) -> list[Middleware]:
    """Outermost first: request ids (so every answer has one), CORS, the body cap."""
    return [
        Middleware(RequestIdMiddleware),
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            # Bearer tokens only: no cookies are sent or accepted cross-origin.
            allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER],
            allow_credentials=False,
            expose_headers=[REQUEST_ID_HEADER],
            max_age=600,
        ),
        Middleware(BodySizeLimit, max_bytes=settings.max_request_bytes),
    ]


# On SIGTERM or Ctrl-C, requests still open after this long are cut: agents' long polls
# (up to 60 s) would otherwise hold the stop. An agent whose claim was cut reconnects,
# and fails any run the cut claim may have granted it (desktop flows are never re-run).
SHUTDOWN_GRACE_SECONDS = 5


# Python's cyclic collector scans every tracked object in a full collection: with the
# service's modules, schema and policy loaded, one took 90 to 100 ms, stalling every open
# request (measured with bench/dispatch.py; 10 ms once frozen). What is alive at start-up
# lives as long as the process, so it is moved out of the collector's reach.
def settle_heap() -> None:
    """Keep the start-up heap out of the cyclic collector's scans (call once, at start)."""
    gc.collect()
    gc.freeze()


def server_config(app: Starlette, settings: Settings, **options: object) -> uvicorn.Config:
    """uvicorn's configuration for the service: the WebSocket message cap, JSON logs, and a
    bounded wait for open requests on shutdown."""
    return uvicorn.Config(
        app,
        ws_max_size=settings.ws_max_message_bytes,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        log_config=None,  # app.logs configures logging; uvicorn's loggers propagate to it
        access_log=False,  # RequestIdMiddleware logs each request, with its id
        **options,  # type: ignore[arg-type]
    )
