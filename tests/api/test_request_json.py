"""Request JSON that cannot be decoded, however deeply nested, is a client error (HTTP 400)."""

from __future__ import annotations

import json

import httpx
import pytest

from app.graphql.request_json import MAX_JSON_DEPTH
from tests.api.conftest import Account
from tests.server import LiveServer
from tests.ws import GraphQLSocket, close_code

DEEP = 2000
START_RUN = "mutation($i: StartRunInput!) { startRun(input: $i) { errors { code } } }"


def lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def post(server: LiveServer, admin: Account, body: str | bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {admin.token}", "Content-Type": "application/json"}
    return server.http.post(server.url, content=body, headers=headers)


def refusal(response: httpx.Response) -> str:
    """The message of an HTTP 400 with a GraphQL-style error body."""
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    message: str = error["message"]
    return message


def still_serving(server: LiveServer, admin: Account) -> None:
    assert server.post("{ __typename }", token=admin.token).json() == {
        "data": {"__typename": "Query"}
    }


@pytest.mark.parametrize(
    "body",
    [
        lists(DEEP),
        objects(DEEP),
        '{"query": "{ __typename }", "variables": {"a": ' + lists(DEEP) + "}}",
        '{"query": "{ __typename }", "extensions": {"a": ' + objects(DEEP) + "}}",
        # Deep, but within what the decoder itself survives: refused before variable
        # coercion and the JSON scalar walk it again.
        json.dumps(
            {
                "query": START_RUN,
                "variables": {"i": {"connectionId": "c", "flowName": "f", "inputs": [[[]]]}},
            }
        ).replace("[[[]]]", lists(500)),
    ],
    ids=["arrays", "objects", "variables", "extensions", "run-inputs"],
)
def test_a_deeply_nested_body_answers_400(server: LiveServer, admin: Account, body: str) -> None:
    message = refusal(post(server, admin, body))
    assert message == f"the request's JSON is nested deeper than {MAX_JSON_DEPTH} levels"
    still_serving(server, admin)


def test_get_variables_nested_deeply_answer_400(server: LiveServer, admin: Account) -> None:
    params = {"query": "{ __typename }", "variables": '{"a": ' + lists(DEEP) + "}"}
    response = server.http.get(
        server.url, params=params, headers={"Authorization": f"Bearer {admin.token}"}
    )
    assert "nested deeper" in refusal(response)


def test_json_nested_up_to_the_limit_is_served(server: LiveServer, admin: Account) -> None:
    # The body is level 1, "variables" level 2, "a" level 3.
    at_limit = '{"query": "{ __typename }", "variables": {"a": ' + lists(MAX_JSON_DEPTH - 2) + "}}"
    assert post(server, admin, at_limit).json() == {"data": {"__typename": "Query"}}
    over = '{"query": "{ __typename }", "variables": {"a": ' + lists(MAX_JSON_DEPTH - 1) + "}}"
    assert "nested deeper" in refusal(post(server, admin, over))


@pytest.mark.parametrize("body", [b'{"query": ', b'{"query": "\xff"}', b""])
def test_a_body_that_is_not_json_answers_400(
    server: LiveServer, admin: Account, body: bytes
) -> None:
    assert refusal(post(server, admin, body)) == "the request is not valid JSON"


@pytest.mark.parametrize(
    "message",
    [
        '{"type": "subscribe", "id": "1", "payload": {"query": "{ __typename }", "variables": '
        + lists(DEEP)
        + "}}",
        lists(DEEP),
        # Valid JSON, but not a protocol message: Strawberry's handler indexed it blindly.
        "[1]",
        '"subscribe"',
        '{"type": "subscribe", "id": "1", "payload": "{ __typename }"}',
        '{"type": "subscribe", "id": [1], "payload": {"query": "{ __typename }"}}',
    ],
    ids=["deep-variables", "deep-arrays", "array", "string", "payload-string", "id-list"],
)
def test_a_websocket_message_that_cannot_be_decoded_closes_the_socket(
    server: LiveServer, admin: Account, message: str
) -> None:
    with GraphQLSocket(server.url, admin.token) as socket:
        assert socket.acknowledged()
        socket.connection.send(message)
        assert close_code(socket) == 4400  # graphql-transport-ws: invalid message
    with GraphQLSocket(server.url, admin.token) as socket:
        assert socket.acknowledged()
        socket.subscribe("{ __typename }")
        assert socket.next_data() == {"__typename": "Query"}
    still_serving(server, admin)
