"""The audit trail: each security event once, with its actor and record; failures claim nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.api.conftest import Account, Api, MakeUser
from tests.api.helpers import ADD, PASSWORD, REGENERATE, REVOKE_GROUP, SHARE_GROUP

LOG = """
query($record: ID, $user: ID, $kind: [AuditKind!], $first: Int, $after: String) {
  auditLog(recordId: $record, userId: $user, kind: $kind, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { kind outcome recordKind recordId actor { name } subjectUser { name } detail } }
  }
}"""

MakeGroup = Callable[..., str]
MakeMachine = Callable[..., tuple[str, str]]


def entries(api: Api, admin: Account, **filters: Any) -> list[dict[str, Any]]:
    """The trail's entries (newest first) matching the filters."""
    variables = {"record": None, "user": None, "kind": None, "first": 100, **filters}
    data = api.data(LOG, variables, as_=admin)["auditLog"]
    return [edge["node"] for edge in data["edges"]]


def test_sharing_and_revoking_are_recorded_once_with_actor_and_record(
    api: Api, admin: Account, make_user: MakeUser, make_group: MakeGroup
) -> None:
    dana = make_user()
    group = make_group()
    api.ok(SHARE_GROUP, {"g": group, "u": dana.id, "a": "USER"}, as_=admin)
    api.ok(SHARE_GROUP, {"g": group, "u": dana.id, "a": "CO_OWNER"}, as_=admin)
    api.ok(REVOKE_GROUP, {"g": group, "u": dana.id}, as_=admin)

    log = entries(api, admin, record=group)
    assert [entry["kind"] for entry in log] == ["GRANT_REVOKED", "GRANT_SHARED", "GRANT_SHARED"]
    assert all(entry["actor"] == {"name": "admin"} for entry in log)
    assert all(entry["subjectUser"] == {"name": dana.name} for entry in log)
    assert all(entry["recordKind"] == "machine_group" for entry in log)
    assert log[1]["detail"] == {"access": "CO_OWNER", "previous": "USER"}
    assert log[0]["outcome"] == "SUCCESS"


def test_a_failed_mutation_leaves_no_entry(
    api: Api, admin: Account, make_user: MakeUser, make_group: MakeGroup
) -> None:
    bystander = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    dana = make_user()
    group = make_group()
    api.ok(SHARE_GROUP, {"g": group, "u": bystander.id, "a": "USER"}, as_=admin)
    refused = api.mutate(SHARE_GROUP, {"g": group, "u": dana.id, "a": "USER"}, as_=bystander)
    assert [error["code"] for error in refused["errors"]] == ["PERMISSION_DENIED"]
    to_owner = api.mutate(SHARE_GROUP, {"g": group, "u": admin.id, "a": "USER"}, as_=admin)
    assert [error["code"] for error in to_owner["errors"]] == ["VALIDATION"]

    log = entries(api, admin, record=group)
    assert [(entry["kind"], entry["subjectUser"]["name"]) for entry in log] == [
        ("GRANT_SHARED", bystander.name)
    ]


def test_group_password_events(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    group = make_group()
    first, _ = make_machine()
    second, _ = make_machine()
    api.ok(ADD, {"m": first, "g": group, "p": PASSWORD}, as_=admin)
    for _ in range(5):
        wrong = api.mutate(ADD, {"m": second, "g": group, "p": "not the password"}, as_=admin)
        assert wrong["errors"][0]["code"] == "WRONG_GROUP_PASSWORD"
    throttled = api.mutate(ADD, {"m": second, "g": group, "p": PASSWORD}, as_=admin)
    assert throttled["errors"][0]["code"] == "TOO_MANY_ATTEMPTS"
    api.ok(REGENERATE, {"g": group}, as_=admin)

    kinds = [entry["kind"] for entry in entries(api, admin, record=group)]
    assert kinds == [
        "GROUP_PASSWORD_REGENERATED",
        "GROUP_THROTTLED",
        *["WRONG_GROUP_PASSWORD"] * 5,
        "GROUP_PASSWORD_SET",
    ]
    wrong_entries = entries(api, admin, record=group, kind=["WRONG_GROUP_PASSWORD"])
    assert {entry["outcome"] for entry in wrong_entries} == {"FAILURE"}


def test_roles_deactivation_machines_and_group_deletion(
    api: Api,
    admin: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
    make_machine: MakeMachine,
) -> None:
    dana = make_user(roles=["ENVIRONMENT_MAKER"])
    api.ok(
        "mutation($u: ID!) { removeSecurityRole(userId: $u, role: ENVIRONMENT_MAKER)"
        " { errors { code } } }",
        {"u": dana.id},
        as_=admin,
    )
    api.ok(
        "mutation($u: ID!) { deactivateUser(userId: $u) { errors { code } } }",
        {"u": dana.id},
        as_=admin,
    )
    api.ok(
        "mutation($u: ID!) { setUserPremium(userId: $u, premium: true) { errors { code } } }",
        {"u": dana.id},
        as_=admin,
    )
    about_dana = entries(api, admin, user=dana.id)
    assert [entry["kind"] for entry in about_dana] == [
        "USER_PREMIUM_CHANGED",
        "USER_DEACTIVATED",
        "ROLE_REMOVED",
        "ROLE_ASSIGNED",
        "USER_CREATED",
    ]
    assert about_dana[0]["detail"] == {"premium": True}
    assert about_dana[2]["detail"] == {"role": "ENVIRONMENT_MAKER"}
    assert about_dana[4]["detail"] == {"premium": False}

    machine, _ = make_machine()
    api.ok(
        "mutation($m: ID!) { deleteMachine(id: $m) { errors { code } } }", {"m": machine}, as_=admin
    )
    assert [e["kind"] for e in entries(api, admin, record=machine)] == [
        "MACHINE_DELETED",
        "MACHINE_REGISTERED",
    ]
    group = make_group()
    api.ok(
        "mutation($g: ID!) { deleteMachineGroup(id: $g) { errors { code } } }",
        {"g": group},
        as_=admin,
    )
    assert [e["kind"] for e in entries(api, admin, record=group)] == ["GROUP_DELETED"]


def test_the_log_pages_newest_first(
    api: Api, admin: Account, make_user: MakeUser, make_group: MakeGroup
) -> None:
    group = make_group()
    for _ in range(5):
        api.ok(SHARE_GROUP, {"g": group, "u": make_user().id, "a": "USER"}, as_=admin)
    seen: list[str] = []
    after = None
    while True:
        page = api.data(LOG, {"record": group, "first": 2, "after": after}, as_=admin)["auditLog"]
        assert page["totalCount"] == 5
        seen += [edge["node"]["subjectUser"]["name"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 5


def test_only_system_administrators_read_the_log(api: Api, make_user: MakeUser) -> None:
    maker = make_user(roles=["ENVIRONMENT_MAKER"])
    body = api.execute(LOG, {"first": 10}, as_=maker)
    assert body["data"] is None
    assert "system administrators" in body["errors"][0]["message"]
