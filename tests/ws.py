"""A small graphql-transport-ws client for tests (websockets' sync client)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

PROTOCOL = "graphql-transport-ws"


class GraphQLSocket:
    """One WebSocket to `/graphql`, initialised with a bearer token."""

    def __init__(self, http_url: str, token: str | None, *, init: bool = True) -> None:
        url = http_url.replace("http://", "ws://", 1)
        self._connect = connect(url, subprotocols=[PROTOCOL])  # type: ignore[list-item]
        self.connection: ClientConnection = self._connect.__enter__()
        self._ids = itertools.count(1)
        if init:
            payload = {"authorization": f"Bearer {token}"} if token else {}
            self.send({"type": "connection_init", "payload": payload})

    def send(self, message: dict[str, Any]) -> None:
        """Send one protocol message."""
        self.connection.send(json.dumps(message))

    def receive(self, timeout: float = 5) -> dict[str, Any]:
        """The next protocol message (TimeoutError after `timeout` seconds)."""
        message: dict[str, Any] = json.loads(self.connection.recv(timeout=timeout))
        return message

    def acknowledged(self, timeout: float = 5) -> bool:
        """Whether the server answered connection_init with connection_ack."""
        return bool(self.receive(timeout)["type"] == "connection_ack")

    def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> str:
        """Start a subscription; returns its id."""
        subscription_id = str(next(self._ids))
        self.send(
            {
                "id": subscription_id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
        )
        return subscription_id

    def next_data(self, timeout: float = 5) -> dict[str, Any] | None:
        """The data of the next `next` message; None when the subscription completed."""
        message = self.receive(timeout)
        while message["type"] in ("ping", "pong"):
            message = self.receive(timeout)
        if message["type"] == "complete":
            return None
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message["payload"]
        data: dict[str, Any] = message["payload"]["data"]
        return data

    def ending(self, timeout: float = 5) -> dict[str, Any]:
        """The error a stream ends with (the stream must then complete): its `message`
        and `extensions`. Data messages still on their way are skipped."""
        while True:
            message = self.receive(timeout)
            if message["type"] == "next" and "errors" in message["payload"]:
                (error,) = message["payload"]["errors"]
                assert self.receive(timeout)["type"] == "complete"
                ended: dict[str, Any] = error
                return ended
            assert message["type"] in ("next", "ping", "pong"), message

    def ask(self, query: str, variables: dict[str, Any] | None = None, timeout: float = 5) -> str:
        """The raw text of what one operation answers: every message until it completes
        or errs, or its first `next` for a live stream (which is then stopped)."""
        operation = self.subscribe(query, variables)
        texts = []
        while True:
            raw = self.connection.recv(timeout=timeout)
            message = json.loads(raw)
            if message.get("id") != operation:
                continue  # a late message of an earlier operation, or a ping
            texts.append(str(raw))
            if message["type"] in ("complete", "error"):
                return "\n".join(texts)
            if message["type"] == "next" and query.lstrip().startswith("subscription"):
                self.send({"id": operation, "type": "complete"})
                return "\n".join(texts)

    def close(self) -> None:
        """Close the socket."""
        self._connect.__exit__(None, None, None)

    def __enter__(self) -> GraphQLSocket:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def close_code(socket: GraphQLSocket, timeout: float = 5) -> int | None:
    """Wait for the server to close the socket; its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            socket.receive(timeout)
    return closed.value.rcvd.code if closed.value.rcvd else None
