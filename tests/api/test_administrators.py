"""Who administers whom: every environment keeps an active SYSTEM_ADMINISTRATOR, and a
user's security roles are read only by that user and by the administrators of users."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.api.conftest import Account, Api, MakeUser

DEACTIVATE = """
mutation($id: ID!) { deactivateUser(userId: $id) { errors { code message field } } }"""
ASSIGN = """
mutation($id: ID!, $role: SecurityRole!, $env: ID) {
  assignSecurityRole(userId: $id, role: $role, environmentId: $env) { errors { code } }
}"""
REMOVE = """
mutation($id: ID!, $role: SecurityRole!, $env: ID) {
  removeSecurityRole(userId: $id, role: $role, environmentId: $env) {
    errors { code message field }
  }
}"""
CREATE_ENVIRONMENT = """
mutation($n: String!) {
  createEnvironment(input: {name: $n, region: "us"}) { environment { id } errors { code } }
}"""
ROLES_BY_NAME = """
query($n: String!, $env: ID) { userByName(name: $n) { name securityRoles(environmentId: $env) } }"""
ADMINISTRATOR = "SYSTEM_ADMINISTRATOR"


def _active(api: Api, account: Account) -> bool:
    body = api.server.post("{ me { deactivated } }", None, account.token)
    return body.status_code == 200 and body.json()["data"]["me"]["deactivated"] is False


def test_the_last_active_administrator_of_an_environment_cannot_be_deactivated(
    api: Api, admin: Account, make_user: MakeUser
) -> None:
    bob = make_user(roles=[ADMINISTRATOR])
    east = api.ok(CREATE_ENVIRONMENT, {"n": "east"}, as_=bob)["environment"]["id"]

    (error,) = api.mutate(DEACTIVATE, {"id": bob.id}, as_=admin)["errors"]
    assert (error["code"], error["field"]) == ("CONFLICT", "userId")
    assert "leave none in east" in error["message"], error["message"]
    assert _active(api, bob)

    # Once someone else administers east, bob may go.
    api.ok(ASSIGN, {"id": admin.id, "role": ADMINISTRATOR, "env": east}, as_=bob)
    api.ok(DEACTIVATE, {"id": bob.id}, as_=admin)
    assert not _active(api, bob)


def test_a_deactivated_administrator_does_not_count_as_the_one_who_stays(
    api: Api, admin: Account, make_user: MakeUser
) -> None:
    carol = make_user(roles=[ADMINISTRATOR])
    api.ok(DEACTIVATE, {"id": carol.id}, as_=admin)

    removal = {"id": admin.id, "role": ADMINISTRATOR}
    (error,) = api.mutate(REMOVE, removal, as_=admin)["errors"]
    assert (error["code"], error["field"]) == ("CONFLICT", "role")
    assert "leave none in default" in error["message"], error["message"]
    assert api.data("{ me { securityRoles } }", as_=admin)["me"]["securityRoles"] == [ADMINISTRATOR]


def test_two_administrators_deactivating_each_other_at_once_leave_one(
    api: Api, admin: Account, make_user: MakeUser
) -> None:
    """The only two administrators, each deactivating the other in the same instant."""
    dana, erin = make_user(roles=[ADMINISTRATOR]), make_user(roles=[ADMINISTRATOR])
    api.ok(REMOVE, {"id": admin.id, "role": ADMINISTRATOR}, as_=dana)

    def deactivate(pair: tuple[Account, Account]) -> Any:
        actor, target = pair
        return api.server.post(DEACTIVATE, {"id": target.id}, actor.token)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(deactivate, [(dana, erin), (erin, dana)]))
    assert [_active(api, dana), _active(api, erin)].count(True) == 1


def test_a_users_roles_are_read_by_that_user_and_administrators_only(
    api: Api, admin: Account, make_user: MakeUser
) -> None:
    owner = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"])
    stranger = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"])
    by_name = {"n": admin.name}

    assert api.data(ROLES_BY_NAME, by_name, as_=stranger)["userByName"] == {
        "name": admin.name,
        "securityRoles": [],
    }
    assert api.data(ROLES_BY_NAME, {"n": owner.name}, as_=owner)["userByName"]["securityRoles"] == [
        "DESKTOP_FLOWS_MACHINE_OWNER"
    ]
    assert api.data(ROLES_BY_NAME, {"n": owner.name}, as_=admin)["userByName"]["securityRoles"] == [
        "DESKTOP_FLOWS_MACHINE_OWNER"
    ]
    assert api.data(ROLES_BY_NAME, by_name, as_=admin)["userByName"]["securityRoles"] == [
        ADMINISTRATOR
    ]
