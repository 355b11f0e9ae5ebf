"""An agent's channel for tests: graphql-transport-ws as a machine key, `agentChannel`
subscribed, and mutations sent on the same socket."""

from __future__ import annotations

import json
from typing import Any

from tests.ws import GraphQLSocket

AGENT_CHANNEL = """
subscription($a: String!) {
  agentChannel(agentId: $a) {
    kind runId machine { id status } run { id flowName inputs status failureReason }
  }
}"""
CONFIRM_RUN = """
mutation($id: ID!) { confirmRun(id: $id) { run { id status } errors { code message } } }"""
COMPLETE_RUN = """
mutation($id: ID!) {
  completeRun(id: $id, outcome: SUCCEEDED) { run { id status } errors { code message } }
}"""


class AgentSocket:
    """One agent's channel: its messages, and mutations sent through it."""

    def __init__(self, url: str, key: str, agent_id: str = "agent-1") -> None:
        self.ws = GraphQLSocket(url, key)
        assert self.ws.acknowledged()
        self.channel = self.ws.subscribe(AGENT_CHANNEL, {"a": agent_id})
        self._pending: list[dict[str, Any]] = []

    def _receive(self, timeout: float) -> dict[str, Any]:
        while True:
            message = self.ws.receive(timeout)
            if message["type"] not in ("ping", "pong"):
                return message

    def next(self, timeout: float = 5) -> dict[str, Any]:
        """The channel's next message (its `agentChannel` object)."""
        while True:
            message = self._pending.pop(0) if self._pending else self._receive(timeout)
            if message.get("id") == self.channel:
                assert message["type"] == "next", message
                assert "errors" not in message["payload"], message["payload"]
                found: dict[str, Any] = message["payload"]["data"]["agentChannel"]
                return found

    def refusal(self, timeout: float = 5) -> str:
        """The channel's error, when it was refused."""
        message = self._receive(timeout)
        assert message.get("id") == self.channel, message
        return json.dumps(message)

    def mutate(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """One mutation on the socket: its payload (channel messages meanwhile are kept)."""
        operation = self.ws.subscribe(query, variables)
        payload: dict[str, Any] | None = None
        while True:
            message = self._receive(5)
            if message.get("id") != operation:
                self._pending.append(message)
                continue
            if message["type"] == "next":
                (payload,) = message["payload"]["data"].values()
            elif message["type"] == "complete":
                assert payload is not None
                return payload
            else:
                raise AssertionError(message)

    def confirm(self, run_id: str) -> dict[str, Any]:
        """confirmRun's payload."""
        return self.mutate(CONFIRM_RUN, {"id": run_id})

    def complete(self, run_id: str) -> dict[str, Any]:
        """completeRun's payload (SUCCEEDED)."""
        return self.mutate(COMPLETE_RUN, {"id": run_id})

    def close(self) -> None:
        self.ws.close()
