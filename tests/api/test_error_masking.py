"""Unexpected exceptions are masked: the client sees an id, the server log the exception.

A rule's own errors (NOT_FOUND, VALIDATION...) and GraphQL's (syntax, validation) stay
visible: they are answers, not accidents.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NoReturn

import pytest

from app.graphql import groups
from app.logs import JsonFormatter
from tests.api.conftest import Account
from tests.api.hardening_helpers import error_messages
from tests.server import LiveServer

SECRET = "SELECT password_hash FROM machine_groups -- /var/lib/mg/state.db"


@pytest.fixture
def broken_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """`machineGroups` hits a bug whose message holds things no client should see."""

    async def crash(*_args: Any, **_kwargs: Any) -> NoReturn:
        raise RuntimeError(SECRET)

    # The server runs in this process, so the patch is what its resolver calls.
    monkeypatch.setattr(groups, "list_groups", crash)


def test_an_unexpected_error_shows_only_an_id_that_the_server_log_has(
    server: LiveServer, admin: Account, broken_groups: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="app.errors")
    response = server.post("{ me { name } machineGroups { totalCount } }", token=admin.token)
    assert response.status_code == 200
    body = response.json()
    assert SECRET not in response.text and "RuntimeError" not in response.text
    assert body["data"] is None  # machineGroups is non-null: the whole data is null
    (error,) = body["errors"]
    request_id = error["extensions"]["requestId"]
    assert error["message"] == f"Unexpected error (request id {request_id})"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id}
    assert response.headers["X-Request-ID"] == request_id

    (record,) = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == request_id
    assert line["level"] == "error"
    assert SECRET in line["message"] and "RuntimeError" in line["exception"]


def test_the_request_id_a_client_sends_names_its_error(
    server: LiveServer, admin: Account, broken_groups: None
) -> None:
    response = server.http.post(
        server.url,
        json={"query": "{ machineGroups { totalCount } }"},
        headers={"Authorization": f"Bearer {admin.token}", "X-Request-ID": "trace-42"},
    )
    assert response.headers["X-Request-ID"] == "trace-42"
    assert response.json()["errors"][0]["extensions"]["requestId"] == "trace-42"


def test_rule_errors_in_queries_stay_visible_with_their_code(
    server: LiveServer, admin: Account
) -> None:
    body = server.post('{ machineGroups(after: "not-a-cursor") { totalCount } }', token=admin.token)
    (error,) = body.json()["errors"]
    assert error["message"] == "the cursor is not valid"
    assert error["extensions"] == {"code": "VALIDATION"}


def test_graphql_errors_stay_visible(server: LiveServer, admin: Account) -> None:
    body = server.post("{ me { name ", token=admin.token).json()
    assert "Syntax Error" in error_messages(body)[0]
    body = server.post(
        "query($n: Int) { machines(first: $n) { totalCount } }", {"n": "x"}, admin.token
    )
    assert "Int cannot represent" in error_messages(body.json())[0]
