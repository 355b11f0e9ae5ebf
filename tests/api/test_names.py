"""Names that reorder or hide text answer VALIDATION on every mutation that takes one,
and change nothing (see app/domain/validation.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.api.conftest import Account, Api, error_codes
from tests.api.helpers import CREATE_GROUP, REGISTER, UPDATE_GROUP
from tests.api.queue_helpers import (
    CREATE_CONNECTION,
    UPDATE_CONNECTION,
    connection_id,
    create_connection,
    share_group,
    start_run,
)
from tests.server import LiveServer

MakeGroup = Callable[..., str]
MakeMachine = Callable[..., tuple[str, str]]

RIGHT_TO_LEFT_OVERRIDE = "invoice\u202etxt.exe"
ZERO_WIDTH_ONLY = "\u200b\u200d\u2060\ufeff"
BAD = {
    "right-to-left-override": RIGHT_TO_LEFT_OVERRIDE,
    "isolate": "bots \u2067\u05d1\u2069",
    "zero-width-only": ZERO_WIDTH_ONLY,
    "hangul-filler": " \u3164 ",
}

UPDATE_MACHINE = """
mutation($id: ID!, $n: String, $d: String) {
  updateMachine(input: {id: $id, name: $n, description: $d}) { errors { code field } }
}"""
CREATE_USER = """
mutation($n: String!) { createUser(input: {name: $n}) { user { id } errors { code field } } }"""
CREATE_ENVIRONMENT = """
mutation($n: String!) {
  createEnvironment(input: {name: $n, region: "us"}) { environment { id } errors { code field } }
}"""
STATE = """
query($u: String!) {
  environments { name }
  machineGroups(first: 100) { edges { node { name description } } }
  machines(first: 100) { edges { node { name } } }
  connections { name username }
  runs(first: 100) { totalCount }
  userByName(name: $u) { id }
}"""


def refused(payload: dict[str, Any], field: str) -> None:
    assert error_codes(payload) == ["VALIDATION"], payload["errors"]
    assert payload["errors"][0]["field"] == field


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_every_name_refuses_text_that_reorders_or_hides_and_nothing_changes(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine, bad: str
) -> None:
    group_id = make_group(name="keep me")
    machine_id, _ = make_machine(name="VM-keep")
    connection = connection_id(api, as_=admin, machine_id=machine_id)
    before = api.data(STATE, {"u": bad}, as_=admin)

    named: list[tuple[str, dict[str, Any]]] = [
        (CREATE_GROUP, {"n": bad}),
        (UPDATE_GROUP, {"id": group_id, "n": bad}),
        (REGISTER, {"n": bad}),
        (UPDATE_MACHINE, {"id": machine_id, "n": bad}),
        (CREATE_USER, {"n": bad}),
        (CREATE_ENVIRONMENT, {"n": bad}),
    ]
    for mutation, variables in named:
        refused(api.mutate(mutation, variables, as_=admin), "name")
    connection_variables = {"m": machine_id, "u": "robot", "p": "secret"}
    created = api.mutate(CREATE_CONNECTION, {**connection_variables, "n": bad}, as_=admin)
    refused(created, "name")
    refused(start_run(api, connection, flow=bad, as_=admin), "flowName")
    for username in (bad, "robot\x00"):
        with_username = {**connection_variables, "n": "new", "u": username}
        refused(api.mutate(CREATE_CONNECTION, with_username, as_=admin), "username")
        updated = api.mutate(UPDATE_CONNECTION, {"id": connection, "u": username}, as_=admin)
        refused(updated, "username")

    assert api.data(STATE, {"u": bad}, as_=admin) == before


@pytest.mark.parametrize(
    "bad", [RIGHT_TO_LEFT_OVERRIDE, "bots\u2066", "line\u2028break"], ids=["rlo", "isolate", "ls"]
)
def test_descriptions_refuse_text_that_reorders_or_breaks(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine, bad: str
) -> None:
    group_id = make_group(name="described")
    machine_id, _ = make_machine()

    refused(api.mutate(CREATE_GROUP, {"n": "new", "d": bad}, as_=admin), "description")
    refused(api.mutate(UPDATE_GROUP, {"id": group_id, "d": bad}, as_=admin), "description")
    refused(api.mutate(UPDATE_MACHINE, {"id": machine_id, "d": bad}, as_=admin), "description")
    state = api.data(STATE, {"u": "x"}, as_=admin)
    assert state["machineGroups"]["edges"] == [{"node": {"name": "described", "description": None}}]


@pytest.mark.parametrize(
    "name",
    [
        "\U0001f469\u200d\U0001f4bb bots",  # woman technologist: an emoji ZWJ sequence
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family, nothing else
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian, with a non-joiner
        "\u05d1\u05d5\u05d8\u05d9\u05dd\u200f 2",  # Hebrew, with a right-to-left mark
        "\u2764\ufe0f",  # a heart with its emoji variation selector
    ],
)
def test_legitimate_text_with_zero_width_characters_is_kept(
    api: Api, admin: Account, name: str
) -> None:
    created = api.ok(CREATE_GROUP, {"n": name, "d": name}, as_=admin)
    assert created["machineGroup"]["name"] == created["machineGroup"]["description"] == name


def test_a_lone_surrogate_is_refused_not_an_unexpected_error(
    server: LiveServer, admin: Account
) -> None:
    # JSON's "\\ud800" decodes to a lone surrogate, which no database encoding can store.
    body = json.dumps({"query": CREATE_GROUP, "variables": {"n": "bots \ud800"}})
    headers = {"Authorization": f"Bearer {admin.token}", "Content-Type": "application/json"}
    response = server.http.post(server.url, content=body, headers=headers)
    refused(response.json()["data"]["createMachineGroup"], "name")


def test_a_connection_name_is_unique_among_its_owners_connections(
    api: Api, admin: Account, make_group: MakeGroup, make_user: Callable[..., Account]
) -> None:
    group = make_group()
    connection_id(api, as_=admin, group_id=group, name="Nightly close")
    again = create_connection(api, as_=admin, group_id=group, name="NIGHTLY CLOSE")
    assert again["errors"] == [{"code": "CONFLICT", "field": "name"}]
    # Another user may use the name for a connection of their own.
    other = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    share_group(api, group, other, "USER", as_=admin)
    assert create_connection(api, as_=other, group_id=group, name="Nightly close")["errors"] == []
    names = [c["name"] for c in api.data("{ connections { name } }", as_=admin)["connections"]]
    assert sorted(names) == ["Nightly close", "Nightly close"]
