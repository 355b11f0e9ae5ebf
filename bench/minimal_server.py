"""The benchmarks' baseline: bare Strawberry on Starlette, from memory.

    .venv/bin/python bench/minimal_server.py --port 8100

Serves the same types and fields as the real `machineGroups` page (totalCount, pageInfo,
and per node id name description myAccess machineCount runningCount queuedCount
owner { name }) from 1,000 groups held in memory: no database, no authorization, no
middleware; parsing and validation are cached per document text, as the service caches
them (a fair floor). Its `queueStatus` subscription only relays what `startRun(groupId)`
broadcasts (one precomputed status to every subscriber of the group). It runs under uvicorn with
`app.main.server_config`, exactly as `machine-groups serve` does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import defaultdict
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from enum import Enum
from functools import partial
from pathlib import Path

import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.graphql.schema import DOCUMENT_CACHE_SIZE
from app.main import server_config
from app.settings import Settings

GROUPS = 1000


@strawberry.enum
class AccessLevel(Enum):
    OWNER = "OWNER"
    CO_OWNER = "CO_OWNER"
    USER = "USER"


@strawberry.type(name="User")
class UserType:
    name: str


@strawberry.type(name="MachineGroup")
class MachineGroupType:
    id: strawberry.ID
    name: str
    description: str | None
    my_access: AccessLevel | None
    machine_count: int
    running_count: int
    queued_count: int
    owner: UserType


@strawberry.type(name="MachineGroupEdge")
class MachineGroupEdge:
    node: MachineGroupType
    cursor: str


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(name="MachineGroupConnection")
class MachineGroupConnection:
    edges: list[MachineGroupEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type(name="Run")
class RunType:
    id: strawberry.ID
    status: str


@strawberry.type(name="QueueStatus")
class QueueStatusType:
    group_id: strawberry.ID
    queued_count: int
    running_count: int
    machine_count: int
    online_machine_count: int
    idle_machine_count: int
    changed_run: RunType | None
    at: datetime


_OWNER = UserType(name="alice")
_GROUPS = [
    MachineGroupType(
        id=strawberry.ID(f"group-{i:04d}"),
        name=f"Group {i:04d}",
        description=f"description {i}" if i % 2 == 0 else None,
        my_access=AccessLevel.CO_OWNER if i % 3 else AccessLevel.USER,
        machine_count=10,
        running_count=i % 2,
        queued_count=i % 5,
        owner=_OWNER,
    )
    for i in range(GROUPS)
]


class Broadcast:
    """Subscribers' queues by group id."""

    def __init__(self) -> None:
        self.queues: defaultdict[str, set[asyncio.Queue[QueueStatusType]]] = defaultdict(set)
        self.sent = 0

    def send(self, group_id: str) -> int:
        self.sent += 1
        status = QueueStatusType(
            group_id=strawberry.ID(group_id),
            queued_count=self.sent,
            running_count=0,
            machine_count=10,
            online_machine_count=0,
            idle_machine_count=0,
            changed_run=RunType(id=strawberry.ID(f"run-{self.sent}"), status="QUEUED"),
            at=datetime.now(UTC),
        )
        queues = self.queues.get(group_id, set())
        for queue in queues:
            queue.put_nowait(status)
        return len(queues)


BROADCAST = Broadcast()


@strawberry.type
class Query:
    @strawberry.field
    def machine_groups(self, first: int | None = 50) -> MachineGroupConnection:
        size = 50 if first is None else first
        page = _GROUPS[:size]
        return MachineGroupConnection(
            edges=[MachineGroupEdge(node=group, cursor=str(group.id)) for group in page],
            page_info=PageInfo(has_next_page=size < GROUPS, end_cursor=str(page[-1].id)),
            total_count=GROUPS,
        )


@strawberry.type
class Mutation:
    @strawberry.mutation
    def start_run(self, group_id: strawberry.ID) -> int:
        """Broadcast one status to the group's subscribers."""
        return BROADCAST.send(str(group_id))


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def queue_status(self, group_id: strawberry.ID) -> AsyncGenerator[QueueStatusType, None]:
        queue: asyncio.Queue[QueueStatusType] = asyncio.Queue()
        BROADCAST.queues[str(group_id)].add(queue)
        try:
            yield QueueStatusType(
                group_id=group_id,
                queued_count=0,
                running_count=0,
                machine_count=10,
                online_machine_count=0,
                idle_machine_count=0,
                changed_run=None,
                at=datetime.now(UTC),
            )
            while True:
                yield await queue.get()
        finally:
            BROADCAST.queues[str(group_id)].discard(queue)


# Parsing and validating a document are cached per distinct text, as the service does
# (app/graphql/schema.py): without them this floor paid a cost ours does not (issue 16).
schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[
        partial(ParserCache, maxsize=DOCUMENT_CACHE_SIZE),
        partial(ValidationCache, maxsize=DOCUMENT_CACHE_SIZE),
    ],
)


async def healthz(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def create_app() -> Starlette:
    view: GraphQL[None, None] = GraphQL(
        schema, graphql_ide=None, subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,)
    )
    return Starlette(
        routes=[
            Route("/graphql", view, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", view),
            Route("/healthz", healthz),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    # Default settings: the same ws_max_size the service gets unless MG_* say otherwise.
    config = server_config(
        create_app(), Settings(), host=args.host, port=args.port, log_level="info"
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
