"""Abuse limits over real HTTP: a query over any limit gets a GraphQL error, not an answer.

Each limit is a setting; these tests run the defaults (so the defaults are what is
tested) except where a small value keeps the request small.
"""

from __future__ import annotations

from typing import Any

import httpx

from app.domain.clock import ManualClock
from app.settings import Settings
from tests.api.conftest import Account
from tests.api.hardening_helpers import admin_token, error_messages, serving
from tests.server import LiveServer


def refused(server: LiveServer, account: Account, query: str, **variables: Any) -> list[str]:
    """The error messages of a request that must not have been executed at all."""
    response = server.post(query, variables, account.token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.get("data") is None, body
    messages = error_messages(body)
    assert messages, body
    return messages


def nested(depth: int) -> str:
    """A query `depth` levels deep (the limiter counts top-level fields as level 0), through
    single objects only so that depth is all it costs: run -> machine -> currentRun -> ..."""
    inner = "id"
    for level in reversed(range(depth - 1)):
        inner = f"{'currentRun' if level % 2 else 'machine'} {{ {inner} }}"
    return f'{{ run(id: "x") {{ {inner} }} }}'


def test_a_query_deeper_than_the_limit_is_refused(
    server: LiveServer, admin: Account, settings: Settings
) -> None:
    limit = settings.max_query_depth
    assert server.post(nested(limit), token=admin.token).json() == {"data": {"run": None}}
    (message,) = refused(server, admin, nested(limit + 1))
    assert "exceeds maximum operation depth" in message


def test_more_aliases_than_the_limit_are_refused(
    server: LiveServer, admin: Account, settings: Settings
) -> None:
    def aliased(count: int) -> str:
        return "{ " + " ".join(f"a{i}: me {{ name }}" for i in range(count)) + " }"

    within = server.post(aliased(settings.max_aliases), token=admin.token).json()
    assert within["data"]["a0"] == {"name": "admin"}
    (message,) = refused(server, admin, aliased(settings.max_aliases + 1))
    assert "aliases found" in message


def test_a_document_with_more_tokens_than_the_limit_is_refused(
    server: LiveServer, admin: Account, settings: Settings
) -> None:
    # Repeating a field costs tokens but no aliases and no depth.
    padding = " name" * settings.max_tokens
    (message,) = refused(server, admin, f"{{ me {{ {padding} }} }}")
    assert f"more than {settings.max_tokens} tokens" in message


def test_a_page_larger_than_the_cap_is_refused_as_literal_or_variable(
    server: LiveServer, admin: Account, settings: Settings
) -> None:
    cap = settings.max_page_size
    page = "query($n: Int) { machineGroups(first: $n) { totalCount } }"
    assert server.post(page, {"n": cap}, admin.token).json()["data"] is not None
    for first in (cap + 1, -1):
        (message,) = refused(server, admin, page, n=first)
        assert message == f"first must be between 0 and {cap}"
    literal = f'{{ machineGroup(id: "x") {{ queue(first: {cap + 1}) {{ id }} }} }}'
    assert refused(server, admin, literal) == [f"first must be between 0 and {cap}"]


def test_a_query_whose_estimated_cost_is_over_the_limit_is_refused(
    server: LiveServer, admin: Account, settings: Settings
) -> None:
    # Shallow, short and without aliases, yet it asks for 100 groups x 50 machines x
    # 50 groups' grants: every other limit lets it through.
    query = """{ machineGroups(first: 100) { edges { node {
        machines { group { access { user { name } } } } } } } }"""
    (message,) = refused(server, admin, query)
    assert f"estimated cost exceeds the limit of {settings.max_query_cost}" in message


def test_batches_are_refused(server: LiveServer, admin: Account) -> None:
    batch = [{"query": "{ me { name } }"}, {"query": "{ me { name } }"}]
    response = server.http.post(
        server.url, json=batch, headers={"Authorization": f"Bearer {admin.token}"}
    )
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body  # nothing of the batch ran
    assert body["errors"][0]["extensions"] == {"code": "BATCH_NOT_ACCEPTED"}
    assert "admin" not in response.text


def test_a_request_body_over_the_cap_is_refused_before_parsing(
    settings: Settings, clock: ManualClock
) -> None:
    with serving(settings, clock, max_request_bytes=4096) as server:
        headers = {"Authorization": f"Bearer {admin_token(server)}"}
        small = {"query": "{ __typename }", "variables": {"pad": "x" * 3000}}
        assert httpx.post(server.url, json=small, headers=headers).status_code == 200
        big = {"query": "{ __typename }", "variables": {"pad": "x" * 5000}}
        declared = httpx.post(server.url, json=big, headers=headers)
        assert declared.status_code == 413
        assert declared.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

        def chunks() -> Any:  # no Content-Length: the cap is counted as the body arrives
            yield b'{"query": "{ __typename }", "variables": {"pad": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}}'

        headers["Content-Type"] = "application/json"
        streamed = httpx.post(server.url, content=chunks(), headers=headers)
        assert streamed.status_code == 413


def test_introspection_is_served_in_development(server: LiveServer, admin: Account) -> None:
    # GraphiQL and schema tools need the full introspection query; no limit refuses it.
    from graphql import get_introspection_query

    body = server.post(get_introspection_query(), token=admin.token).json()
    assert "errors" not in body, body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"
