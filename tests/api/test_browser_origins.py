"""Browsers: one allowlist of origins for CORS and for the WebSocket `Origin` check."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin, Subprotocol

from app.settings import Settings
from tests.api.conftest import Account
from tests.server import LiveServer
from tests.ws import PROTOCOL

ALLOWED = "https://console.example.com"
STRANGER = "https://evil.example.net"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One front end allowed."""
    return dataclasses.replace(settings, cors_origins=(ALLOWED,))


def post(server: LiveServer, admin: Account, origin: str) -> httpx.Response:
    return server.http.post(
        server.url,
        json={"query": "{ me { name } }"},
        headers={"Authorization": f"Bearer {admin.token}", "Origin": origin},
    )


def preflight(server: LiveServer, origin: str) -> httpx.Response:
    return server.http.options(
        server.url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_an_allowed_origin_gets_cors_headers_for_bearer_tokens_without_cookies(
    server: LiveServer, admin: Account
) -> None:
    allowed = preflight(server, ALLOWED)
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    response = post(server, admin, ALLOWED)
    assert response.json() == {"data": {"me": {"name": "admin"}}}
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "x-request-id" in response.headers["Access-Control-Expose-Headers"].lower()


def test_a_stranger_origin_gets_no_cors_headers(server: LiveServer, admin: Account) -> None:
    refused = preflight(server, STRANGER)
    assert refused.status_code == 400
    assert "Access-Control-Allow-Origin" not in refused.headers
    # Without the header the browser withholds the answer from the page.
    assert "Access-Control-Allow-Origin" not in post(server, admin, STRANGER).headers


def test_a_websocket_from_a_stranger_origin_is_refused(server: LiveServer, admin: Account) -> None:
    url = server.url.replace("http://", "ws://", 1)
    with pytest.raises(InvalidStatus) as refused:
        connect(url, subprotocols=[Subprotocol(PROTOCOL)], origin=Origin(STRANGER))
    assert refused.value.response.status_code == 403


def test_a_websocket_from_an_allowed_origin_or_no_browser_is_accepted(
    server: LiveServer, admin: Account
) -> None:
    url = server.url.replace("http://", "ws://", 1)
    for origin in (Origin(ALLOWED), None):  # agents and scripts send no Origin
        with connect(url, subprotocols=[Subprotocol(PROTOCOL)], origin=origin) as socket:
            init = {"authorization": f"Bearer {admin.token}"}
            socket.send(json.dumps({"type": "connection_init", "payload": init}))
            assert '"connection_ack"' in str(socket.recv(timeout=5))
