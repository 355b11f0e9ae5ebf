"""The one endpoint: POST and GET at /graphql, GraphiQL for browsers, malformed requests."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest

from app.domain.clock import ManualClock
from app.settings import Settings
from tests.api.conftest import Account
from tests.server import LiveServer


def auth(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.token}"}


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    """(status, code, message) of a request refused before GraphQL runs: always a
    GraphQL error body, never plain text."""
    assert response.headers["content-type"] == "application/json", response.text
    (error,) = response.json()["errors"]
    return response.status_code, error["extensions"]["code"], error["message"]


def test_queries_also_work_over_get(server: LiveServer, admin: Account) -> None:
    response = httpx.get(server.url, params={"query": "{ me { name } }"}, headers=auth(admin))
    assert response.status_code == 200
    assert response.json() == {"data": {"me": {"name": "admin"}}}


def test_mutations_are_refused_over_get(server: LiveServer, admin: Account) -> None:
    query = 'mutation { createMachineGroup(input: {name: "via get"}) { errors { code } } }'
    response = httpx.get(server.url, params={"query": query}, headers=auth(admin))
    assert refusal(response) == (
        400,
        "METHOD_NOT_ALLOWED",
        "mutations need POST: a GET request may only run queries",
    )
    groups = server.post("{ machineGroups { totalCount } }", token=admin.token).json()
    assert groups["data"]["machineGroups"]["totalCount"] == 0


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_other_methods_get_405_as_a_graphql_error_and_change_nothing(
    server: LiveServer, admin: Account, method: str
) -> None:
    mutation = 'mutation { createMachineGroup(input: {name: "via put"}) { errors { code } } }'
    response = httpx.request(method, server.url, json={"query": mutation}, headers=auth(admin))
    assert refusal(response) == (
        405,
        "METHOD_NOT_ALLOWED",
        "/graphql answers GET (queries) and POST (any operation) only",
    )
    assert response.headers["allow"] == "GET, POST"
    groups = server.post("{ machineGroups { totalCount } }", token=admin.token).json()
    assert groups["data"]["machineGroups"]["totalCount"] == 0


def test_a_malformed_query_gets_a_graphql_error(server: LiveServer, admin: Account) -> None:
    body = server.post("{ me { name ", token=admin.token).json()
    assert body["data"] is None
    assert "Syntax Error" in body["errors"][0]["message"]
    unknown = server.post("{ me { shoeSize } }", token=admin.token).json()
    assert "shoeSize" in unknown["errors"][0]["message"]


def test_browsers_get_graphiql_in_development(server: LiveServer) -> None:
    response = httpx.get(server.url, headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


@pytest.fixture
def production_server(settings: Settings, clock: ManualClock) -> Iterator[LiveServer]:
    live = LiveServer(dataclasses.replace(settings, graphiql=False), clock).start()
    yield live
    live.stop()


def test_graphiql_can_be_switched_off(production_server: LiveServer) -> None:
    response = httpx.get(production_server.url, headers={"Accept": "text/html"})
    assert response.status_code == 401  # no IDE page: it is an API request without a token


def test_healthz_answers_without_a_token(server: LiveServer) -> None:
    response = httpx.get(server.url.replace("/graphql", "/healthz"))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("content", "content_type", "expected"),
    [
        ('{"query": "{ __typename }"}', "text/plain", (400, "UNSUPPORTED_CONTENT_TYPE")),
        ('[{"query": "{ __typename }"}]', "application/json", (400, "BATCH_NOT_ACCEPTED")),
        ('{"variables": {}}', "application/json", (400, "QUERY_MISSING")),
        ('{"query": 42}', "application/json", (400, "BAD_REQUEST")),
        ('{"query": "{ __typename }", "variables": [1]}', "application/json", (400, "BAD_REQUEST")),
        (
            '{"query": "{ __typename }", "operationName": "C"}',
            "application/json",
            (400, "BAD_REQUEST"),
        ),
        ("{not json", "application/json", (400, "BAD_REQUEST")),
    ],
    ids=[
        "content type",
        "batch",
        "no query",
        "query not text",
        "variables not an object",
        "unknown operation",
        "not JSON",
    ],
)
def test_requests_graphql_cannot_read_answer_a_graphql_error_saying_what_to_send(
    server: LiveServer, admin: Account, content: str, content_type: str, expected: tuple[int, str]
) -> None:
    headers = {**auth(admin), "Content-Type": content_type}
    status, code, message = refusal(server.http.post(server.url, content=content, headers=headers))
    assert (status, code) == expected
    assert message and "None" not in message
