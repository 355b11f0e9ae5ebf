"""The agent's live channel: one graphql-transport-ws connection to `/graphql`, holding
the `agentChannel` subscription, with the agent's other operations sent on it too."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from app.agent.client import AgentClient, AgentError, AnswerLost, Unauthorized

PROTOCOL = Subprotocol("graphql-transport-ws")
OPEN_SECONDS = 10.0
# Close codes the service answers with (app/graphql/sockets.py, Strawberry).
FORBIDDEN = 4403

AGENT_CHANNEL = """
subscription AgentChannel($agent: String!) {
  agentChannel(agentId: $agent) {
    kind runId
    machine { id name status }
    run { id flowName inputs priority status }
  }
}"""


class ChannelDown(Exception):
    """The channel closed, or could not be opened: reconnect (or fall back to HTTP)."""

    def __init__(self, message: str, *, upgrade_refused: bool = False) -> None:
        super().__init__(message)
        # The server (or a proxy before it) answered but refused the WebSocket: HTTP may pass.
        self.upgrade_refused = upgrade_refused


class ChannelRefused(AgentError):
    """The service refused the channel for good (another agent holds it)."""


def websocket_url(graphql_url: str) -> str:
    """ws(s)://…/graphql for an http(s)://…/graphql URL."""
    scheme, rest = graphql_url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}"


class LiveChannel:
    """An open channel: its messages, and operations sent through it."""

    def __init__(self, socket: ClientConnection, url: str) -> None:
        self._socket = socket
        self.url = url
        self._ids = itertools.count(2)  # 1 is the channel's subscription
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._messages: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, key: str, agent_id: str) -> LiveChannel:
        """Connect, authenticate with the machine key, and subscribe to the channel."""
        ws_url = websocket_url(url)
        try:
            socket = await connect(
                ws_url,
                subprotocols=[PROTOCOL],
                open_timeout=OPEN_SECONDS,
                compression=None,
                proxy=None,
                max_size=2**20,
            )
        except (InvalidHandshake, InvalidURI) as error:
            raise ChannelDown(f"{ws_url}: {error}", upgrade_refused=True) from None
        except (OSError, TimeoutError) as error:
            raise ChannelDown(f"{ws_url}: {type(error).__name__}: {error}") from None
        try:
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}}
            await socket.send(json.dumps(init))
            acknowledged = json.loads(await asyncio.wait_for(socket.recv(), OPEN_SECONDS))
            if acknowledged.get("type") != "connection_ack":
                raise ChannelDown(f"{ws_url}: no connection_ack", upgrade_refused=True)
            subscribe = {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": AGENT_CHANNEL, "variables": {"agent": agent_id}},
            }
            await socket.send(json.dumps(subscribe))
        except ConnectionClosed as closed:
            await socket.close()
            if closed.rcvd is not None and closed.rcvd.code == FORBIDDEN:
                raise Unauthorized(
                    f"{url} refused the machine key: it is wrong, or the machine was deleted;"
                    " register the machine again and use its new key"
                ) from None
            raise _closed(url, closed) from None
        except (OSError, TimeoutError, ValueError) as error:
            await socket.close()
            raise ChannelDown(f"{ws_url}: {type(error).__name__}: {error}") from None
        return cls(socket, url)

    async def _read(self) -> None:
        try:
            async for raw in self._socket:
                message = json.loads(raw)
                kind, message_id = message.get("type"), message.get("id")
                if kind == "ping":
                    await self._socket.send(json.dumps({"type": "pong"}))
                elif message_id == "1":
                    self._messages.put_nowait(message)
                elif message_id in self._answers:
                    self._settle(message_id, message)
            problem: BaseException = ChannelDown(f"{self.url}: the server closed the channel")
            if self._socket.close_code == FORBIDDEN:
                problem = Unauthorized(
                    f"{self.url} closed the channel ({self._socket.close_reason}): the machine"
                    " key is wrong or the machine was deleted"
                )
        except ConnectionClosed as closed:
            problem = _closed(self.url, closed)
        except (OSError, ValueError) as error:
            problem = ChannelDown(f"{self.url}: {type(error).__name__}: {error}")
        for answer in self._answers.values():
            if not answer.done():
                answer.set_exception(
                    ChannelDown(str(problem)) if not isinstance(problem, ChannelDown) else problem
                )
        self._messages.put_nowait(problem)

    def _settle(self, message_id: str, message: dict[str, Any]) -> None:
        answer = self._answers[message_id]
        if answer.done():
            return
        kind = message.get("type")
        payload = message.get("payload")
        if kind == "next" and isinstance(payload, dict):
            if payload.get("errors"):
                messages = "; ".join(str(error.get("message")) for error in payload["errors"])
                answer.set_exception(AgentError(f"the server rejected a request: {messages}"))
            else:
                answer.set_result(payload["data"])
        elif kind == "error":
            answer.set_exception(AgentError(f"the server rejected a request: {payload}"))

    async def next_message(self) -> dict[str, Any]:
        """The channel's next message (its `agentChannel` object); ChannelDown once it
        closed, ChannelRefused when the service refused it."""
        message = await self._messages.get()
        if isinstance(message, BaseException):
            self._messages.put_nowait(message)  # every later call sees it too
            raise message
        if message.get("type") == "next":
            payload = message.get("payload") or {}
            if not payload.get("errors"):
                found: dict[str, Any] = payload["data"]["agentChannel"]
                return found
            messages = "; ".join(str(error.get("message")) for error in payload["errors"])
            raise ChannelRefused(f"the server refused the channel: {messages}")
        if message.get("type") == "error":
            raise ChannelRefused(f"the server refused the channel: {message.get('payload')}")
        raise ChannelDown(f"{self.url}: the channel ended")

    async def call(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of one operation sent on the socket; ChannelDown if it closes first
        (the operation may or may not have taken effect)."""
        if self._reader.done():
            raise ChannelDown(f"{self.url}: the channel is closed")
        message_id = str(next(self._ids))
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[message_id] = answer
        body = {"query": query, "variables": dict(variables or {})}
        try:
            await self._socket.send(
                json.dumps({"id": message_id, "type": "subscribe", "payload": body})
            )
            return await answer
        except ConnectionClosed as closed:
            raise _closed(self.url, closed) from None
        finally:
            self._answers.pop(message_id, None)

    async def close(self) -> None:
        """Close the socket (the service then takes the machine offline)."""
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._socket.close()


def _closed(url: str, closed: ConnectionClosed) -> ChannelDown:
    code = closed.rcvd.code if closed.rcvd else None
    reason = closed.rcvd.reason if closed.rcvd else ""
    if code == FORBIDDEN:
        return ChannelDown(f"{url} refused the machine key ({reason})", upgrade_refused=False)
    return ChannelDown(f"{url}: the channel closed ({code or 'no close frame'} {reason})".strip())


class ChannelFirst:
    """The agent's operations: on the channel while it is open, over HTTP otherwise.

    An operation that may be sent again (a heartbeat, a completion) whose channel closed
    before its answer goes over HTTP; one that may not (`resend=False`) raises AnswerLost.
    """

    def __init__(self, http: AgentClient) -> None:
        self.http = http
        self.url = http.url
        self.live: LiveChannel | None = None

    async def call(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        wait_seconds: float = 0,
        retry: bool = True,
        resend: bool = True,
    ) -> dict[str, Any]:
        """The `data` of one operation."""
        live = self.live
        if live is not None:
            try:
                return await live.call(query, variables)
            except ChannelDown as down:
                if not resend:
                    raise AnswerLost(str(down)) from None
        return await self.http.call(
            query, variables, wait_seconds=wait_seconds, retry=retry, resend=resend
        )
