"""Subscriptions over HTTP: multipart streams (what GraphiQL sends), authorized as sockets.

GraphiQL sends every operation with `Accept: application/json, multipart/mixed`: a
subscription is answered as a multipart stream, anything else as one JSON answer. A
subscription sent without that answers 406, saying where streams are served.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from app.db.models import User
from tests.api.conftest import Account, Api, MakeUser
from tests.api.queue_helpers import (
    REVOKE_GROUP,
    MakeGroup,
    MakeMachine,
    Pool,
    pool,
    share_group,
    started,
)
from tests.api.test_subscriptions import QUEUE_STATUS
from tests.server import LiveServer
from tests.ws import GraphQLSocket

WITHIN = 1.5  # the spec's second, with slack for a busy machine
GRAPHIQL_ACCEPT = "application/json, multipart/mixed"
BOUNDARY = "\r\n--graphql"


@pytest.fixture
def ready(api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine) -> Pool:
    """A group of one online machine with a connection, owned by the administrator."""
    return pool(api, admin, make_group, make_machine)


class MultipartStream:
    """The payloads of a multipart subscription answer, read as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks = response.iter_text()
        self._buffer = ""
        self.ended = False

    def _parts(self) -> Iterator[str]:
        while True:
            *complete, self._buffer = self._buffer.split(BOUNDARY)
            yield from complete
            if self._buffer.startswith("--"):  # the closing delimiter
                self.ended = True
                return
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                return

    def next_payload(self) -> dict[str, Any] | None:
        """The next payload (heartbeats skipped); None once the stream has ended."""
        for part in self._parts():
            _headers, _, body = part.partition("\r\n\r\n")
            if body.strip():
                message = json.loads(body)
                if "payload" in message:
                    payload: dict[str, Any] = message["payload"]
                    return payload
        return None


@contextmanager
def subscribed(
    server: LiveServer, viewer: Account, group_id: str, accept: str = GRAPHIQL_ACCEPT
) -> Iterator[MultipartStream]:
    """A queueStatus subscription as `viewer`, over HTTP."""
    headers = {"Authorization": f"Bearer {viewer.token}", "Accept": accept}
    body = {"query": QUEUE_STATUS, "variables": {"g": group_id}}
    with server.http.stream("POST", server.url, json=body, headers=headers, timeout=10) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("multipart/mixed")
        yield MultipartStream(response)


def queue_status(stream: MultipartStream) -> dict[str, Any]:
    payload = stream.next_payload()
    assert payload is not None, "the stream ended"
    assert "errors" not in payload, payload
    status: dict[str, Any] = payload["data"]["queueStatus"]
    return status


@pytest.mark.parametrize(
    "accept",
    [GRAPHIQL_ACCEPT, 'multipart/mixed;subscriptionSpec="1.0",application/json'],
    ids=["graphiql", "apollo"],
)
def test_queue_status_streams_over_http(
    server: LiveServer, api: Api, admin: Account, ready: Pool, accept: str
) -> None:
    with subscribed(server, admin, ready.group_id, accept) as stream:
        snapshot = queue_status(stream)
        assert (snapshot["groupId"], snapshot["queuedCount"]) == (ready.group_id, 0)
        assert snapshot["changedRun"] is None
        queued = started(api, ready.connection_id, as_=admin)
        change = queue_status(stream)
        assert change["changedRun"] == {"id": queued["id"], "status": "QUEUED"}
        assert change["queuedCount"] == 1


def test_a_revoked_viewers_http_stream_ends_like_its_socket(
    server: LiveServer, api: Api, admin: Account, make_user: MakeUser, ready: Pool
) -> None:
    viewer = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    share_group(api, ready.group_id, viewer, "USER", as_=admin)
    with (
        subscribed(server, viewer, ready.group_id) as stream,
        GraphQLSocket(server.url, viewer.token) as socket,
    ):
        assert socket.acknowledged()
        socket.subscribe(QUEUE_STATUS, {"g": ready.group_id})
        assert socket.next_data() is not None
        assert queue_status(stream)["changedRun"] is None

        api.ok(REVOKE_GROUP, {"g": ready.group_id, "u": viewer.id}, as_=admin)
        ended = socket.ending()
        assert ended["extensions"] == {"code": "NOT_FOUND"}
        last = stream.next_payload()
        assert last is not None
        assert last["data"] is None
        assert last["errors"] == [ended]
        assert stream.next_payload() is None and stream.ended


def test_a_user_deactivated_with_no_event_ends_their_http_stream_within_a_second(
    server: LiveServer, make_user: MakeUser, api: Api, admin: Account, ready: Pool
) -> None:
    viewer = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    share_group(api, ready.group_id, viewer, "USER", as_=admin)
    with subscribed(server, viewer, ready.group_id) as stream:
        assert queue_status(stream)["changedRun"] is None

        async def deactivate() -> None:  # as the command line does: no event
            async with server.state.db.write() as session:
                await session.execute(
                    update(User).where(col(User.id) == viewer.id).values(deactivated=True)
                )

        server.run(deactivate())
        began = time.monotonic()
        last = stream.next_payload()
        assert time.monotonic() - began <= WITHIN
        assert last is not None
        assert last["errors"][0]["extensions"] == {"code": "TOKEN_USER_DEACTIVATED"}
        assert stream.next_payload() is None


def test_an_http_subscription_needs_a_valid_token(server: LiveServer, ready: Pool) -> None:
    response = server.http.post(
        server.url,
        json={"query": QUEUE_STATUS, "variables": {"g": ready.group_id}},
        headers={"Accept": GRAPHIQL_ACCEPT},
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "TOKEN_MISSING"


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_subscription_that_cannot_be_streamed_names_the_websocket_endpoint(
    server: LiveServer, admin: Account, ready: Pool, method: str
) -> None:
    request: dict[str, Any] = {"query": QUEUE_STATUS, "variables": {"g": ready.group_id}}
    headers = {"Authorization": f"Bearer {admin.token}", "Accept": "application/json"}
    if method == "POST":
        response = server.http.post(server.url, json=request, headers=headers)
    else:
        params = {"query": QUEUE_STATUS, "variables": json.dumps(request["variables"])}
        response = server.http.get(server.url, params=params, headers=headers)
    assert response.status_code == 406
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "SUBSCRIPTION_NEEDS_STREAM"}
    assert "ws://<host>/graphql" in error["message"]
    assert "graphql-transport-ws" in error["message"]
    assert "`Accept: multipart/mixed`" in error["message"]


def test_queries_sent_as_graphiql_sends_them_get_one_json_answer(
    server: LiveServer, admin: Account
) -> None:
    for accept in (GRAPHIQL_ACCEPT, 'multipart/mixed;subscriptionSpec="1.0"'):
        response = server.http.post(
            server.url,
            json={"query": "{ me { name } }"},
            headers={"Authorization": f"Bearer {admin.token}", "Accept": accept},
        )
        assert response.status_code == 200
        assert response.json() == {"data": {"me": {"name": "admin"}}}
