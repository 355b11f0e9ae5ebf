"""MG_ENV=production: no introspection, no name suggestions; development keeps both."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from app.domain.clock import ManualClock
from app.settings import Settings
from tests.api.hardening_helpers import admin_token, error_messages, serving
from tests.server import LiveServer

# Misspelt field, argument, enum value and type: each makes GraphQL suggest a real name.
MISSPELT = [
    "{ me { nmae } }",
    "{ machineGroups(frist: 5) { totalCount } }",
    "{ runs(status: [QUEUD]) { totalCount } }",
    "{ ... on Quer { me { name } } }",
]
INTROSPECTION = [
    "{ __schema { types { name } } }",
    '{ __type(name: "MachineGroup") { fields { name } } }',
]


@pytest.fixture
def production(settings: Settings, clock: ManualClock) -> Iterator[LiveServer]:
    """A server with the settings `MG_ENV=production` gives."""
    production = dataclasses.replace(settings, production=True, graphiql=False)
    with serving(production, clock) as server:
        yield server


@pytest.mark.parametrize("query", INTROSPECTION)
def test_production_refuses_introspection(production: LiveServer, query: str) -> None:
    body = production.post(query, token=admin_token(production)).json()
    assert body["data"] is None
    messages = error_messages(body)
    assert messages
    assert all("introspection" in message.lower() for message in messages), messages


def test_production_still_answers_typename(production: LiveServer) -> None:
    # Clients (Apollo, urql) add __typename to every selection: it reveals nothing.
    body = production.post("{ __typename me { __typename } }", token=admin_token(production))
    assert body.json() == {"data": {"__typename": "Query", "me": {"__typename": "User"}}}


@pytest.mark.parametrize("query", MISSPELT)
def test_production_suggests_no_names(production: LiveServer, query: str) -> None:
    body = production.post(query, token=admin_token(production)).json()
    messages = error_messages(body)
    assert messages
    assert not any("Did you mean" in message for message in messages), messages


@pytest.mark.parametrize("query", MISSPELT)
def test_development_suggests_names(server: LiveServer, query: str) -> None:
    body = server.post(query, token=admin_token(server)).json()
    assert any("Did you mean" in message for message in error_messages(body))
