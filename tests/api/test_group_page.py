"""The machineGroups page reads each group's facts up front; they must equal the facts
the same groups answer one at a time, however the query selects them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.api.conftest import Account, Api, MakeUser
from tests.api.helpers import add_machine, share_group

FACTS = """
  id name description myAccess machineCount runningCount queuedCount hasPassword
  maintenance hasDeactivatedUsers owner { id name }
"""
ONE = f"query($g: ID!) {{ machineGroup(id: $g) {{ {FACTS} }} }}"
DIRECT = f"{{ machineGroups(first: 10) {{ totalCount edges {{ node {{ {FACTS} }} }} }} }}"
NAMED_FRAGMENT = f"""
fragment Facts on MachineGroup {{ {FACTS} }}
{{ machineGroups(first: 10) {{ totalCount edges {{ node {{ ...Facts }} }} }} }}"""
INLINE_FRAGMENT = f"""
{{ machineGroups(first: 10) {{
  totalCount edges {{ node {{ id ... on MachineGroup {{ {FACTS} }} }} }}
}} }}"""
ALIASED = """
{ machineGroups(first: 10) { totalCount edges { node {
  id name description myAccess machineCount runningCount queuedCount hasPassword
  maintenance hasDeactivatedUsers owner { id name }
  level: myAccess machines: machineCount who: owner { name }
} } } }"""


def _page(api: Api, query: str, viewer: Account) -> dict[str, dict[str, Any]]:
    page = api.data(query, as_=viewer)["machineGroups"]
    nodes = [edge["node"] for edge in page["edges"]]
    assert page["totalCount"] == len(nodes)
    return {node["id"]: node for node in nodes}


def test_page_facts_equal_each_groups_own_answer_in_any_query_shape(
    api: Api,
    admin: Account,
    make_user: MakeUser,
    make_group: Callable[..., str],
    make_machine: Callable[..., tuple[str, str]],
) -> None:
    viewer = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"], premium=True)
    shared_as_user = make_group()
    shared_as_co_owner = make_group()
    own = make_group(owner=viewer)
    make_group()  # not shared: the viewer must not see it
    for _ in range(2):
        assert add_machine(api, make_machine()[0], shared_as_user, as_=admin)["errors"] == []
    assert add_machine(api, make_machine(owner=viewer)[0], own, as_=viewer)["errors"] == []
    assert share_group(api, shared_as_user, viewer, "USER", as_=admin)["errors"] == []
    assert share_group(api, shared_as_co_owner, viewer, "CO_OWNER", as_=admin)["errors"] == []

    one_at_a_time = {
        group_id: api.data(ONE, {"g": group_id}, as_=viewer)["machineGroup"]
        for group_id in (shared_as_user, shared_as_co_owner, own)
    }
    assert {g: facts["myAccess"] for g, facts in one_at_a_time.items()} == {
        shared_as_user: "USER",
        shared_as_co_owner: "CO_OWNER",
        own: "OWNER",
    }
    assert one_at_a_time[shared_as_user]["machineCount"] == 2
    assert one_at_a_time[own]["owner"]["name"] == viewer.name

    for query in (DIRECT, NAMED_FRAGMENT, INLINE_FRAGMENT):
        assert _page(api, query, viewer) == one_at_a_time
    # The same aliases on single groups, whose facts are loaded only when selected.
    for group_id, facts in one_at_a_time.items():
        twice = api.data(
            "query($g: ID!) { machineGroup(id: $g) { a: machineCount b: machineCount"
            " level: myAccess who: owner { name } } }",
            {"g": group_id},
            as_=viewer,
        )["machineGroup"]
        assert twice == {
            "a": facts["machineCount"],
            "b": facts["machineCount"],
            "level": facts["myAccess"],
            "who": {"name": facts["owner"]["name"]},
        }
    aliased = _page(api, ALIASED, viewer)
    for group_id, node in aliased.items():
        assert node["level"] == node["myAccess"] == one_at_a_time[group_id]["myAccess"]
        assert node["machines"] == node["machineCount"] == one_at_a_time[group_id]["machineCount"]
        assert node["who"]["name"] == one_at_a_time[group_id]["owner"]["name"]


def test_an_administrator_without_a_grant_sees_no_level_on_the_page(
    api: Api, admin: Account, make_user: MakeUser, make_group: Callable[..., str]
) -> None:
    owner = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"], premium=True)
    theirs = make_group(owner=owner)
    mine = make_group()
    page = _page(api, DIRECT, admin)
    assert page[theirs]["myAccess"] is None
    assert page[theirs]["owner"]["name"] == owner.name
    assert page[mine]["myAccess"] == "OWNER"
