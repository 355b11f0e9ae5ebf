"""GraphQL over HTTP with the machine key as bearer token, retried through server restarts."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from app.agent.console import say

HTTP_UNAUTHORIZED = 401
# Statuses that mean "the server is restarting or overloaded": worth another try.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
CONNECT_TIMEOUT_SECONDS = 5.0
# Beyond what a call itself may wait on the server (a long-polling claim).
RESPONSE_MARGIN_SECONDS = 30.0


class AgentError(Exception):
    """Something retrying cannot fix: the agent stops."""


class Unauthorized(AgentError):
    """The server refused the machine key (HTTP 401)."""


class Unreachable(AgentError):
    """A call made without retries did not reach the server."""


class AnswerLost(Exception):
    """A request that may have changed something got no answer (the server went away)."""


@dataclass
class Backoff:
    """Delays between retries: doubling from `first` up to `cap`, with jitter."""

    first: float = 0.2
    cap: float = 10.0
    attempts: int = 0

    def next_delay(self) -> float:
        """The next delay; random within its upper half, so agents restarted together spread out."""
        ceiling: float = min(self.cap, self.first * 2.0**self.attempts)
        self.attempts += 1
        return ceiling * random.uniform(0.5, 1.0)


def graphql_url(server: str) -> str:
    """The `/graphql` endpoint of a server URL given with or without that suffix."""
    url = server.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the server URL must start with http:// or https://, got {server!r}")
    return url if url.endswith("/graphql") else f"{url}/graphql"


class AgentClient:
    """Sends the agent's operations; connection errors and 5xx are retried until they pass."""

    def __init__(
        self, url: str, key: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url
        self._http = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {key}"}, transport=transport
        )
        # The furthest retry announced in the current outage: concurrent calls share one line
        # per backoff step. Zero while connected.
        self._announced_step = 0

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    async def call(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        wait_seconds: float = 0,
        retry: bool = True,
        resend: bool = True,
    ) -> dict[str, Any]:
        """The `data` of one operation, retried through outages unless told otherwise."""
        # `wait_seconds`: how long the server may hold the call. Without `retry`, a failure
        # raises Unreachable; without `resend`, a request that may have reached the server
        # raises AnswerLost instead of going again.
        timeout = httpx.Timeout(
            wait_seconds + RESPONSE_MARGIN_SECONDS, connect=CONNECT_TIMEOUT_SECONDS
        )
        body = {"query": query, "variables": dict(variables or {})}
        backoff = Backoff()
        while True:
            delivered = True
            try:
                response = await self._http.post(self.url, json=body, timeout=timeout)
            except httpx.TransportError as error:
                delivered = not isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
                problem = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    return self._data(response)
                problem = f"HTTP {response.status_code}"
            if not retry:
                raise Unreachable(f"{self.url}: {problem}")
            if delivered and not resend:
                raise AnswerLost(problem)
            delay = backoff.next_delay()
            if backoff.attempts > self._announced_step:
                self._announced_step = backoff.attempts
                say(f"reconnecting to {self.url} in {delay:.1f} s ({problem})")
            await asyncio.sleep(delay)

    def _data(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code == HTTP_UNAUTHORIZED:
            raise Unauthorized(
                f"{self.url} refused the machine key (HTTP 401): it is wrong, or the machine"
                " was deleted; register the machine again and use its new key"
            )
        if self._announced_step:
            self._announced_step = 0
            say(f"reconnected to {self.url}")
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != httpx.codes.OK or not isinstance(body, dict):
            raise AgentError(
                f"{self.url} answered HTTP {response.status_code}: {response.text[:300]}"
                " (is this a Machine Groups server?)"
            )
        if body.get("errors"):
            messages = "; ".join(str(error.get("message")) for error in body["errors"])
            raise AgentError(f"the server rejected the agent's request: {messages}")
        data: dict[str, Any] = body["data"]
        return data
