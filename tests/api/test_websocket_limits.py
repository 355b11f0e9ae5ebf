"""WebSocket safety: the init timeout, the subscription cap, the message size cap, one protocol."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from app.domain.clock import ManualClock
from app.settings import Settings
from tests.api.conftest import Account
from tests.api.hardening_helpers import admin_token, serving
from tests.server import LiveServer
from tests.ws import PROTOCOL, GraphQLSocket, close_code

QUEUE_STATUS = "subscription($g: ID!) { queueStatus(groupId: $g) { queuedCount } }"
INIT_TIMEOUT = 0.5
MAX_SUBSCRIPTIONS = 2
MAX_MESSAGE_BYTES = 4096


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small WebSocket limits, so that the tests reach them quickly."""
    return dataclasses.replace(
        settings,
        ws_init_timeout=INIT_TIMEOUT,
        ws_max_subscriptions=MAX_SUBSCRIPTIONS,
        ws_max_message_bytes=MAX_MESSAGE_BYTES,
    )


def test_a_socket_without_connection_init_is_closed_after_the_timeout(
    server: LiveServer,
) -> None:
    started = time.monotonic()
    with GraphQLSocket(server.url, None, init=False) as socket:
        assert close_code(socket) == 4408  # "Connection initialisation timeout"
    assert INIT_TIMEOUT <= time.monotonic() - started < INIT_TIMEOUT + 3


def test_the_subscription_cap_holds_per_connection(
    server: LiveServer, admin: Account, make_group: Callable[..., str]
) -> None:
    group_id = make_group()
    with GraphQLSocket(server.url, admin.token) as socket:
        assert socket.acknowledged()
        ids = [socket.subscribe(QUEUE_STATUS, {"g": group_id}) for _ in range(MAX_SUBSCRIPTIONS)]
        for _ in ids:
            assert socket.next_data() == {"queueStatus": {"queuedCount": 0}}
        over = socket.subscribe(QUEUE_STATUS, {"g": group_id})
        refusal = socket.receive()
        assert refusal == {
            "id": over,
            "type": "error",
            "payload": [{"message": "Subscription limit reached"}],
        }
        # Ending one makes room for another.
        socket.send({"id": ids[0], "type": "complete"})
        time.sleep(0.2)
        socket.subscribe(QUEUE_STATUS, {"g": group_id})
        assert socket.next_data() == {"queueStatus": {"queuedCount": 0}}


@pytest.fixture
def served(settings: Settings, clock: ManualClock) -> Iterator[LiveServer]:
    """The server under uvicorn configured as `machine-groups serve` configures it."""
    with serving(settings, clock) as live:
        yield live


def test_a_message_over_the_size_cap_closes_the_socket(served: LiveServer) -> None:
    token = admin_token(served)
    with GraphQLSocket(served.url, None, init=False) as socket:
        # Just under the cap is fine.
        payload = {"authorization": f"Bearer {token}", "pad": "x" * (MAX_MESSAGE_BYTES - 500)}
        socket.send({"type": "connection_init", "payload": payload})
        assert socket.acknowledged()
        socket.send({"id": "1", "type": "subscribe", "payload": {"query": "x" * MAX_MESSAGE_BYTES}})
        assert close_code(socket) == 1009  # "message too big"


def test_only_the_graphql_transport_ws_protocol_is_spoken(server: LiveServer) -> None:
    url = server.url.replace("http://", "ws://", 1)
    legacy = "graphql-ws"
    with connect(url, subprotocols=[Subprotocol(legacy)]) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4406  # "Subprotocol not acceptable"
    with connect(url, subprotocols=[Subprotocol(PROTOCOL)]) as socket:
        assert socket.subprotocol == PROTOCOL
