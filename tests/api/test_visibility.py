"""Who sees what: grants decide, a group governs its machines, admins see all; paging."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.domain.clock import ManualClock
from tests.api.conftest import Account, Api, MakeUser, error_codes
from tests.api.helpers import (
    CREATE_GROUP,
    UPDATE_GROUP,
    add_machine,
    create_environment,
    find_group,
    find_machine,
    group,
    group_names,
    machine_ids,
    remove_machine,
    revoke_group,
    share_group,
    share_machine,
)

MakeGroup = Callable[..., str]
MakeMachine = Callable[..., tuple[str, str]]

PAGE = """
query($first: Int, $after: String) {
  machineGroups(first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { name } }
  }
}"""
UPDATE_MACHINE = """
mutation($id: ID!) { updateMachine(input: {id: $id, name: "renamed"}) { errors { code } } }"""


def _grants(api: Api, group_id: str, as_: Account) -> list[tuple[str, str]]:
    return [(g["user"]["name"], g["access"]) for g in group(api, group_id, as_=as_)["access"]]


def _my_access(api: Api, machine_id: str, as_: Account) -> str | None:
    found = find_machine(api, machine_id, as_=as_)
    assert found is not None, "the machine should be visible"
    access: str | None = found["myAccess"]
    return access


@pytest.fixture
def owner(make_user: MakeUser) -> Account:
    """A premium environment maker who creates groups and registers machines."""
    return make_user(roles=["ENVIRONMENT_MAKER"], premium=True)


def test_records_without_a_grant_are_invisible_everywhere(
    api: Api,
    owner: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
    make_machine: MakeMachine,
) -> None:
    group_id = make_group(owner=owner, name="secret group")
    member, _ = make_machine(owner=owner)
    loose, _ = make_machine(owner=owner)
    assert add_machine(api, member, group_id, as_=owner)["errors"] == []
    make_group(name="admin's group")
    # Security roles do not let anyone see records they hold no grant on.
    stranger = make_user(roles=["ENVIRONMENT_MAKER", "DESKTOP_FLOWS_MACHINE_OWNER"])

    totals = api.data("{ machineGroups { totalCount } machines { totalCount } }", as_=stranger)
    assert totals == {"machineGroups": {"totalCount": 0}, "machines": {"totalCount": 0}}
    assert group_names(api, as_=stranger) == []
    assert machine_ids(api, as_=stranger) == set()
    assert find_group(api, group_id, as_=stranger) is None
    assert find_machine(api, member, as_=stranger) is None
    assert find_machine(api, loose, as_=stranger) is None
    # Acting on them answers NOT_FOUND, as for an id that does not exist.
    for record_id in (group_id, "no-such-group"):
        renamed = api.mutate(UPDATE_GROUP, {"id": record_id, "n": "x"}, as_=stranger)
        assert error_codes(renamed) == ["NOT_FOUND"]
    assert error_codes(api.mutate(UPDATE_MACHINE, {"id": loose}, as_=stranger)) == ["NOT_FOUND"]
    assert group_names(api, as_=owner) == ["secret group"]
    assert machine_ids(api, as_=owner) == {member, loose}


def test_a_machine_in_a_group_is_seen_by_those_who_see_the_group(
    api: Api,
    owner: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
    make_machine: MakeMachine,
) -> None:
    group_id = make_group(owner=owner, name="pool")
    member, _ = make_machine(owner=owner)
    loose, _ = make_machine(owner=owner)
    assert add_machine(api, member, group_id, as_=owner)["errors"] == []
    runner = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])

    assert share_group(api, group_id, runner, "USER", as_=owner)["errors"] == []

    assert group_names(api, as_=runner) == ["pool"]
    assert group(api, group_id, as_=runner)["machines"] == [{"id": member}]
    assert machine_ids(api, as_=runner) == {member}
    assert _my_access(api, member, runner) == "USER"
    assert find_machine(api, loose, as_=runner) is None
    # Losing the group grant loses the machine too.
    assert revoke_group(api, group_id, runner, as_=owner)["errors"] == []
    assert machine_ids(api, as_=runner) == set()
    assert find_machine(api, member, as_=runner) is None


def test_a_machines_own_grants_are_dormant_while_it_is_in_a_group(
    api: Api,
    owner: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
    make_machine: MakeMachine,
) -> None:
    group_id = make_group(owner=owner)
    machine_id, _ = make_machine(owner=owner)
    dana = make_user(roles=["ENVIRONMENT_MAKER"])  # a machine grant only
    erin = make_user(roles=["ENVIRONMENT_MAKER"])  # a group grant only
    assert share_machine(api, machine_id, dana, "CO_OWNER", as_=owner)["errors"] == []
    assert share_group(api, group_id, erin, "USER", as_=owner)["errors"] == []
    assert _my_access(api, machine_id, dana) == "CO_OWNER"
    assert find_machine(api, machine_id, as_=erin) is None

    assert add_machine(api, machine_id, group_id, as_=owner)["errors"] == []

    assert find_machine(api, machine_id, as_=dana) is None
    assert machine_ids(api, as_=dana) == set()
    assert error_codes(api.mutate(UPDATE_MACHINE, {"id": machine_id}, as_=dana)) == ["NOT_FOUND"]
    assert _my_access(api, machine_id, erin) == "USER"
    # Leaving the group wakes the machine's own grants and ends the group's.
    assert remove_machine(api, machine_id, as_=owner)["errors"] == []
    assert _my_access(api, machine_id, dana) == "CO_OWNER"
    assert machine_ids(api, as_=dana) == {machine_id}
    assert find_machine(api, machine_id, as_=erin) is None


def test_a_machine_owners_access_is_their_access_to_the_group(
    api: Api,
    owner: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
    make_machine: MakeMachine,
) -> None:
    machine_owner = make_user(roles=["ENVIRONMENT_MAKER"], premium=True)
    group_id = make_group(owner=owner)
    machine_id, _ = make_machine(owner=machine_owner)
    assert share_group(api, group_id, machine_owner, "CO_OWNER", as_=owner)["errors"] == []
    assert add_machine(api, machine_id, group_id, as_=machine_owner)["errors"] == []
    assert _my_access(api, machine_id, machine_owner) == "CO_OWNER"
    assert _my_access(api, machine_id, owner) == "OWNER"

    assert revoke_group(api, group_id, machine_owner, as_=owner)["errors"] == []

    assert find_machine(api, machine_id, as_=machine_owner) is None
    assert remove_machine(api, machine_id, as_=owner)["errors"] == []
    assert _my_access(api, machine_id, machine_owner) == "OWNER"


def test_a_system_administrator_sees_everything_without_a_grant(
    api: Api,
    admin: Account,
    owner: Account,
    make_group: MakeGroup,
    make_machine: MakeMachine,
) -> None:
    group_id = make_group(owner=owner, name="theirs")
    shared_id = make_group(owner=owner, name="shared with admin")
    member, _ = make_machine(owner=owner)
    loose, _ = make_machine(owner=owner)
    assert add_machine(api, member, group_id, as_=owner)["errors"] == []
    assert share_group(api, shared_id, admin, "USER", as_=owner)["errors"] == []

    data = api.data(
        "{ machineGroups { edges { node { name myAccess } } }"
        " machines { edges { node { id myAccess } } } }",
        as_=admin,
    )

    groups = {e["node"]["name"]: e["node"]["myAccess"] for e in data["machineGroups"]["edges"]}
    machines = {e["node"]["id"]: e["node"]["myAccess"] for e in data["machines"]["edges"]}
    assert groups == {"theirs": None, "shared with admin": "USER"}
    assert machines == {member: None, loose: None}
    seen = group(api, group_id, as_=admin)
    assert (seen["myAccess"], seen["machines"]) == (None, [{"id": member}])
    assert _my_access(api, loose, admin) is None
    assert _grants(api, group_id, admin) == [(owner.name, "OWNER")]


def test_an_administrator_sees_everything_only_in_their_own_environments(
    api: Api, admin: Account, make_user: MakeUser
) -> None:
    other_admin = make_user(roles=["SYSTEM_ADMINISTRATOR"])
    second = create_environment(api, admin, "second", "eu")["id"]
    created = api.ok(CREATE_GROUP, {"e": second, "n": "elsewhere"}, as_=admin)
    group_id = created["machineGroup"]["id"]

    assert group_names(api, as_=other_admin, environment_id=second) == []
    assert find_group(api, group_id, as_=other_admin) is None
    assert group_names(api, as_=admin, environment_id=second) == ["elsewhere"]


ROLE_CHANGE = """
mutation($id: ID!, $role: SecurityRole!) {
  %s(userId: $id, role: $role) { errors { code } }
}"""


def test_a_role_given_or_taken_applies_to_the_next_list(
    api: Api,
    admin: Account,
    owner: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
    make_machine: MakeMachine,
) -> None:
    make_group(owner=owner, name="theirs")
    machine_id, _ = make_machine(owner=owner)
    viewer = make_user()
    assert (group_names(api, as_=viewer), machine_ids(api, as_=viewer)) == ([], set())

    api.ok(
        ROLE_CHANGE % "assignSecurityRole",
        {"id": viewer.id, "role": "SYSTEM_ADMINISTRATOR"},
        as_=admin,
    )
    assert group_names(api, as_=viewer) == ["theirs"]
    assert machine_ids(api, as_=viewer) == {machine_id}

    api.ok(
        ROLE_CHANGE % "removeSecurityRole",
        {"id": viewer.id, "role": "SYSTEM_ADMINISTRATOR"},
        as_=admin,
    )
    assert (group_names(api, as_=viewer), machine_ids(api, as_=viewer)) == ([], set())


def test_access_lists_every_grant_to_sharers_and_only_their_own_to_others(
    api: Api,
    admin: Account,
    owner: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
    clock: ManualClock,
) -> None:
    group_id = make_group(owner=owner)
    co_owner = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"])
    can_share = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER_CAN_SHARE"])
    plain = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    # CO_OWNER level, but no role that may share: sees only their own grant.
    unprivileged = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    shares = [
        (co_owner, "CO_OWNER"),
        (can_share, "USER"),
        (plain, "USER"),
        (unprivileged, "CO_OWNER"),
    ]
    for user, level in shares:
        assert share_group(api, group_id, user, level, as_=owner)["errors"] == []
        clock.advance(1)
    full = [(owner.name, "OWNER")] + [(user.name, level) for user, level in shares]

    for viewer in (owner, co_owner, can_share, admin):
        listed = _grants(api, group_id, viewer)
        assert listed[0] == (owner.name, "OWNER"), viewer.name
        assert sorted(listed) == sorted(full), viewer.name
    assert _grants(api, group_id, plain) == [(plain.name, "USER")]
    assert _grants(api, group_id, unprivileged) == [(unprivileged.name, "CO_OWNER")]


# --- paging -----------------------------------------------------------------------------


def _page(api: Api, viewer: Account, after: str | None) -> dict[str, Any]:
    connection: dict[str, Any] = api.data(PAGE, {"first": 2, "after": after}, as_=viewer)[
        "machineGroups"
    ]
    return connection


def test_pages_of_two_give_every_group_once_in_name_order(
    api: Api, owner: Account, make_group: MakeGroup
) -> None:
    for name in ("delta", "Alpha", "echo", "charlie", "Bravo"):
        make_group(owner=owner, name=name)
    make_group(name="aardvark")  # the admin's: not the owner's to see

    names: list[str] = []
    more: list[bool] = []
    after: str | None = None
    for _ in range(5):
        page = _page(api, owner, after)
        assert page["totalCount"] == 5
        names += [edge["node"]["name"] for edge in page["edges"]]
        more.append(page["pageInfo"]["hasNextPage"])
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break

    assert names == ["Alpha", "Bravo", "charlie", "delta", "echo"]
    assert more == [True, True, False]


def test_an_exact_last_page_says_there_is_no_next_one(
    api: Api, owner: Account, make_group: MakeGroup
) -> None:
    for name in ("one", "two"):
        make_group(owner=owner, name=name)
    page = _page(api, owner, None)
    assert [edge["node"]["name"] for edge in page["edges"]] == ["one", "two"]
    assert page["pageInfo"]["hasNextPage"] is False
    after = _page(api, owner, page["pageInfo"]["endCursor"])
    assert (after["edges"], after["pageInfo"]["hasNextPage"], after["totalCount"]) == ([], False, 2)


def test_the_total_counts_each_visible_group_once_in_its_own_environment(
    api: Api, admin: Account, owner: Account, make_user: MakeUser, make_group: MakeGroup
) -> None:
    viewer = make_user(roles=["ENVIRONMENT_MAKER"], premium=True)
    for name in ("mine 1", "mine 2"):
        make_group(owner=viewer, name=name)
    shared = [make_group(owner=owner, name=f"shared {n}") for n in range(3)]
    make_group(owner=owner, name="not shared")
    for group_id in shared:
        assert share_group(api, group_id, viewer, "USER", as_=owner)["errors"] == []
    assert revoke_group(api, shared[0], viewer, as_=owner)["errors"] == []
    second = create_environment(api, admin, "second", "eu")["id"]
    elsewhere = api.ok(CREATE_GROUP, {"e": second, "n": "elsewhere"}, as_=admin)
    shared_elsewhere = share_group(
        api, elsewhere["machineGroup"]["id"], viewer, "CO_OWNER", as_=admin
    )
    assert shared_elsewhere["errors"] == []

    names: list[str] = []
    after: str | None = None
    while True:
        page = _page(api, viewer, after)
        assert page["totalCount"] == 4
        names += [edge["node"]["name"] for edge in page["edges"]]
        after = page["pageInfo"]["endCursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
    assert names == ["mine 1", "mine 2", "shared 1", "shared 2"]

    def total(as_: Account, environment_id: str | None) -> int:
        query = "query($e: ID) { machineGroups(environmentId: $e, first: 1) { totalCount } }"
        count: int = api.data(query, {"e": environment_id}, as_=as_)["machineGroups"]["totalCount"]
        return count

    assert total(viewer, second) == 1
    # An administrator counts every group of the environment, granted or not.
    assert (total(admin, None), total(admin, second)) == (6, 1)


@pytest.mark.parametrize("cursor", ["garbage", "!!!", "", "bm90LWEtY3Vyc29y"])
def test_a_garbage_cursor_gives_a_graphql_error(
    api: Api, owner: Account, make_group: MakeGroup, cursor: str
) -> None:
    make_group(owner=owner, name="only")

    body = api.execute(PAGE, {"first": 2, "after": cursor}, as_=owner)

    assert body.get("errors"), body
    assert body.get("data") is None
