"""The limits and rules of the spec; after every refusal, the state is checked unchanged."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.settings import Settings
from tests.api.conftest import Account, Api, MakeUser, error_codes
from tests.api.helpers import (
    CREATE_GROUP,
    DELETE_GROUP,
    REGISTER,
    UPDATE_GROUP,
    add_machine,
    create_environment,
    find_group,
    group,
    group_names,
    group_of,
    insert_group_and_machine,
    machine_ids,
    machines_in_group,
    regenerate,
    remove_machine,
    revoke_group,
    revoke_machine,
    share_group,
    share_machine,
)
from tests.server import LiveServer

MakeGroup = Callable[..., str]
MakeMachine = Callable[..., tuple[str, str]]
MAX = 3

DEACTIVATE = "mutation($id: ID!) { deactivateUser(userId: $id) { errors { code } } }"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small groups, so that filling one is quick."""
    return dataclasses.replace(settings, max_machines_per_group=MAX)


def _full_group(api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine) -> str:
    group_id = make_group()
    for _ in range(MAX):
        assert add_machine(api, make_machine()[0], group_id, as_=admin)["errors"] == []
    return group_id


def _access(api: Api, group_id: str, as_: Account) -> list[tuple[str, str, bool]]:
    return [
        (grant["user"]["name"], grant["access"], grant["user"]["deactivated"])
        for grant in group(api, group_id, as_=as_)["access"]
    ]


# --- group size -------------------------------------------------------------------------


def test_a_full_group_answers_group_full(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    group_id = _full_group(api, admin, make_group, make_machine)
    extra, _ = make_machine()

    payload = add_machine(api, extra, group_id, as_=admin)

    assert error_codes(payload) == ["GROUP_FULL"]
    assert group(api, group_id, as_=admin)["machineCount"] == MAX
    assert group_of(api, extra, as_=admin) is None
    # A wrong password comes first in the spec's order of errors.
    wrong = add_machine(api, extra, group_id, "not the password", as_=admin)
    assert error_codes(wrong) == ["WRONG_GROUP_PASSWORD"]
    # A freed place can be taken.
    first = group(api, group_id, as_=admin)["machines"][0]["id"]
    assert remove_machine(api, first, as_=admin)["errors"] == []
    assert add_machine(api, extra, group_id, as_=admin)["errors"] == []
    assert group(api, group_id, as_=admin)["machineCount"] == MAX


def test_racing_adds_for_the_last_place_let_exactly_one_in(
    api: Api,
    admin: Account,
    make_group: MakeGroup,
    make_machine: MakeMachine,
    server: LiveServer,
) -> None:
    group_id = make_group()
    for _ in range(MAX - 1):
        assert add_machine(api, make_machine()[0], group_id, as_=admin)["errors"] == []
    racers = [make_machine()[0] for _ in range(8)]
    start = threading.Barrier(len(racers))

    def race(machine_id: str) -> list[str]:
        start.wait()
        return error_codes(add_machine(api, machine_id, group_id, as_=admin))

    with ThreadPoolExecutor(max_workers=len(racers)) as pool:
        outcomes = list(pool.map(race, racers))

    assert sorted(outcomes) == [[]] + [["GROUP_FULL"]] * (len(racers) - 1)
    assert machines_in_group(server, group_id) == MAX
    winner = racers[outcomes.index([])]
    assert group_of(api, winner, as_=admin) == group_id
    assert group(api, group_id, as_=admin)["machineCount"] == MAX


def test_deleting_a_group_with_machines_answers_group_not_empty(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    group_id = make_group()
    machine_id, _ = make_machine()
    assert add_machine(api, machine_id, group_id, as_=admin)["errors"] == []

    payload = api.mutate(DELETE_GROUP, {"id": group_id}, as_=admin)

    assert error_codes(payload) == ["GROUP_NOT_EMPTY"]
    assert payload["deletedId"] is None
    assert group(api, group_id, as_=admin)["machines"] == [{"id": machine_id}]
    assert remove_machine(api, machine_id, as_=admin)["errors"] == []
    assert api.ok(DELETE_GROUP, {"id": group_id}, as_=admin)["deletedId"] == group_id
    assert find_group(api, group_id, as_=admin) is None


# --- licence and region -----------------------------------------------------------------


def test_registering_needs_a_premium_licence(api: Api, admin: Account, make_user: MakeUser) -> None:
    unlicensed = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"])
    no_role = make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    before = machine_ids(api, as_=admin)

    assert error_codes(api.mutate(REGISTER, {"n": "VM"}, as_=unlicensed)) == ["PREMIUM_REQUIRED"]
    # Without the register privilege, PERMISSION_DENIED comes first.
    assert error_codes(api.mutate(REGISTER, {"n": "VM"}, as_=no_role)) == ["PERMISSION_DENIED"]
    # The licence check applies to administrators too.
    api.ok(
        "mutation($id: ID!) { setUserPremium(userId: $id, premium: false) { errors { code } } }",
        {"id": admin.id},
        as_=admin,
    )
    payload = api.mutate(REGISTER, {"n": "VM"}, as_=admin)
    assert error_codes(payload) == ["PREMIUM_REQUIRED"]
    assert payload["machineKey"] is None
    assert machine_ids(api, as_=admin) == before == set()


@pytest.mark.parametrize("region", ["gcc", "GCC-High", "dod", "China"])
def test_machine_features_are_unavailable_in_restricted_regions(
    api: Api, admin: Account, server: LiveServer, region: str
) -> None:
    restricted = create_environment(api, admin, f"env {region}", region)
    open_env = create_environment(api, admin, "open", "eu")
    listed = {
        env["name"]: env["machineGroupsAvailable"]
        for env in api.data("{ environments { name machineGroupsAvailable } }", as_=admin)[
            "environments"
        ]
    }
    assert listed == {"default": True, f"env {region}": False, "open": True}
    assert restricted["machineGroupsAvailable"] is False

    env_id = restricted["id"]
    create = api.mutate(CREATE_GROUP, {"e": env_id, "n": "blocked"}, as_=admin)
    register = api.mutate(REGISTER, {"e": env_id, "n": "VM"}, as_=admin)
    assert error_codes(create) == error_codes(register) == ["UNAVAILABLE_IN_REGION"]
    assert group_names(api, as_=admin, environment_id=env_id) == []
    assert api.ok(CREATE_GROUP, {"e": open_env["id"], "n": "allowed"}, as_=admin)["machineGroup"]


def test_mutations_on_records_in_a_restricted_region_are_unavailable(
    api: Api, admin: Account, make_user: MakeUser, server: LiveServer
) -> None:
    env_id = create_environment(api, admin, "government", "gcc")["id"]
    other = make_user()

    # The API creates nothing there: the records are written straight to the database,
    # as records from before the restriction would be.
    group_id, machine_id = insert_group_and_machine(server, env_id, admin.id)
    attempts = [
        api.mutate(UPDATE_GROUP, {"id": group_id, "n": "renamed"}, as_=admin),
        api.mutate(DELETE_GROUP, {"id": group_id}, as_=admin),
        regenerate(api, group_id, as_=admin),
        share_group(api, group_id, other, "USER", as_=admin),
        share_machine(api, machine_id, other, "USER", as_=admin),
        add_machine(api, machine_id, group_id, as_=admin),
        remove_machine(api, machine_id, as_=admin),
        api.mutate(
            "mutation($g: ID!) { setMachineGroupMaintenance(id: $g, enabled: true) {"
            " errors { code } } }",
            {"g": group_id},
            as_=admin,
        ),
        api.mutate(
            "mutation($m: ID!) { deleteMachine(id: $m) { errors { code } } }",
            {"m": machine_id},
            as_=admin,
        ),
    ]
    assert [error_codes(payload) for payload in attempts] == [["UNAVAILABLE_IN_REGION"]] * 9
    state = group(api, group_id, as_=admin)
    assert (state["name"], state["hasPassword"], state["machines"]) == ("gov", False, [])
    assert [grant["user"]["name"] for grant in state["access"]] == ["admin"]
    assert group_of(api, machine_id, as_=admin) is None


# --- deactivated users ------------------------------------------------------------------


def test_deactivated_users_stay_listed_until_a_co_owner_revokes_them(
    api: Api, admin: Account, make_user: MakeUser, make_group: MakeGroup, server: LiveServer
) -> None:
    owner = make_user(roles=["ENVIRONMENT_MAKER"])
    co_owner = make_user(roles=["ENVIRONMENT_MAKER"])
    dana = make_user()
    group_id = make_group(owner=owner)
    assert share_group(api, group_id, co_owner, "CO_OWNER", as_=owner)["errors"] == []
    assert share_group(api, group_id, dana, "USER", as_=owner)["errors"] == []
    assert group(api, group_id, as_=owner)["hasDeactivatedUsers"] is False

    api.ok(DEACTIVATE, {"id": dana.id}, as_=admin)

    assert server.post("{ me { name } }", token=dana.token).status_code == 401
    assert server.post("{ machineGroups { totalCount } }", token=dana.token).status_code == 401
    for viewer in (owner, co_owner):
        assert group(api, group_id, as_=viewer)["hasDeactivatedUsers"] is True
        assert (dana.name, "USER", True) in _access(api, group_id, viewer)

    assert revoke_group(api, group_id, dana, as_=co_owner)["errors"] == []

    state = group(api, group_id, as_=owner)
    assert state["hasDeactivatedUsers"] is False
    assert _access(api, group_id, owner) == [
        (owner.name, "OWNER", False),
        (co_owner.name, "CO_OWNER", False),
    ]


def test_a_deactivated_owner_does_not_raise_the_notice(
    api: Api, admin: Account, make_user: MakeUser, make_group: MakeGroup
) -> None:
    owner = make_user(roles=["ENVIRONMENT_MAKER"])
    co_owner = make_user(roles=["ENVIRONMENT_MAKER"])
    group_id = make_group(owner=owner)
    assert share_group(api, group_id, co_owner, "CO_OWNER", as_=owner)["errors"] == []

    api.ok(DEACTIVATE, {"id": owner.id}, as_=admin)

    assert group(api, group_id, as_=co_owner)["hasDeactivatedUsers"] is False
    assert _access(api, group_id, co_owner)[0] == (owner.name, "OWNER", True)


def test_sharing_to_a_deactivated_user_answers_user_deactivated(
    api: Api, admin: Account, make_user: MakeUser, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    group_id = make_group()
    machine_id, _ = make_machine()
    gone = make_user()
    api.ok(DEACTIVATE, {"id": gone.id}, as_=admin)

    assert error_codes(share_group(api, group_id, gone, "USER", as_=admin)) == ["USER_DEACTIVATED"]
    assert error_codes(share_machine(api, machine_id, gone, "CO_OWNER", as_=admin)) == [
        "USER_DEACTIVATED"
    ]
    assert _access(api, group_id, admin) == [("admin", "OWNER", False)]
    assert group(api, group_id, as_=admin)["hasDeactivatedUsers"] is False


# --- machine-level sharing in a group ---------------------------------------------------


def test_machine_level_sharing_in_a_group_answers_managed_by_group(
    api: Api, admin: Account, make_user: MakeUser, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    dana = make_user()
    erin = make_user()
    group_id = make_group()
    machine_id, _ = make_machine()
    assert share_machine(api, machine_id, dana, "USER", as_=admin)["errors"] == []
    assert add_machine(api, machine_id, group_id, as_=admin)["errors"] == []

    assert error_codes(share_machine(api, machine_id, erin, "USER", as_=admin)) == [
        "MANAGED_BY_GROUP"
    ]
    assert error_codes(revoke_machine(api, machine_id, dana, as_=admin)) == ["MANAGED_BY_GROUP"]

    # Nothing changed: once out of the group, dana's grant applies again and erin has none.
    assert remove_machine(api, machine_id, as_=admin)["errors"] == []
    assert machine_ids(api, as_=dana) == {machine_id}
    assert machine_ids(api, as_=erin) == set()


# --- names ------------------------------------------------------------------------------

BAD_NAMES = ["", "   ", "x" * 101, "bell\x07name", "tab\tname", "line\nbreak", "nul\x00name"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_answer_validation_and_create_nothing(
    api: Api, admin: Account, make_group: MakeGroup, name: str
) -> None:
    group_id = make_group(name="keep me")

    created = api.mutate(CREATE_GROUP, {"n": name}, as_=admin)
    renamed = api.mutate(UPDATE_GROUP, {"id": group_id, "n": name}, as_=admin)
    registered = api.mutate(REGISTER, {"n": name}, as_=admin)

    for payload in (created, renamed, registered):
        assert error_codes(payload) == ["VALIDATION"]
        assert payload["errors"][0]["field"] == "name"
    assert group_names(api, as_=admin) == ["keep me"]
    assert machine_ids(api, as_=admin) == set()


def test_names_are_trimmed_and_may_be_100_characters(api: Api, admin: Account) -> None:
    trimmed = api.ok(CREATE_GROUP, {"n": "  Finance bots \t", "d": "  month end  "}, as_=admin)
    longest = api.ok(CREATE_GROUP, {"n": "n" * 100}, as_=admin)
    machine = api.ok(REGISTER, {"n": "  VM-1  "}, as_=admin)

    assert trimmed["machineGroup"]["name"] == "Finance bots"
    assert trimmed["machineGroup"]["description"] == "month end"
    assert longest["machineGroup"]["name"] == "n" * 100
    assert machine["machine"]["name"] == "VM-1"


@pytest.mark.parametrize("description", ["d" * 1001, "bell\x07", "two\nlines"])
def test_bad_descriptions_answer_validation(
    api: Api, admin: Account, make_group: MakeGroup, description: str
) -> None:
    group_id = make_group(name="described")

    created = api.mutate(CREATE_GROUP, {"n": "new", "d": description}, as_=admin)
    updated = api.mutate(UPDATE_GROUP, {"id": group_id, "d": description}, as_=admin)

    assert error_codes(created) == error_codes(updated) == ["VALIDATION"]
    assert group_names(api, as_=admin) == ["described"]
    assert group(api, group_id, as_=admin)["description"] is None


def test_group_names_are_unique_per_environment_ignoring_case(
    api: Api, admin: Account, make_group: MakeGroup
) -> None:
    group_id = make_group(name="Finance bots")
    other_id = make_group(name="HR bots")

    for name in ("finance BOTS", "  FINANCE bots  "):
        assert error_codes(api.mutate(CREATE_GROUP, {"n": name}, as_=admin)) == ["CONFLICT"]
    renamed = api.mutate(UPDATE_GROUP, {"id": other_id, "n": "FINANCE BOTS"}, as_=admin)
    assert error_codes(renamed) == ["CONFLICT"]
    assert group_names(api, as_=admin) == ["Finance bots", "HR bots"]

    # A group may change the case of its own name; another environment may reuse it.
    recased = api.ok(UPDATE_GROUP, {"id": group_id, "n": "FINANCE BOTS"}, as_=admin)
    assert recased["machineGroup"]["name"] == "FINANCE BOTS"
    second = create_environment(api, admin, "second", "eu")["id"]
    assert api.ok(CREATE_GROUP, {"e": second, "n": "Finance Bots"}, as_=admin)["machineGroup"]
    assert group_names(api, as_=admin, environment_id=second) == ["Finance Bots"]


def test_machine_names_need_not_be_unique(api: Api, admin: Account) -> None:
    first = api.ok(REGISTER, {"n": "VM-1"}, as_=admin)["machine"]["id"]
    second = api.ok(REGISTER, {"n": "vm-1"}, as_=admin)["machine"]["id"]
    assert machine_ids(api, as_=admin) == {first, second}


# --- membership conflicts ---------------------------------------------------------------


def test_adding_a_machine_to_its_own_group_or_removing_a_loose_one_answers_conflict(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    group_id = make_group()
    member, _ = make_machine()
    loose, _ = make_machine()
    assert add_machine(api, member, group_id, as_=admin)["errors"] == []

    assert error_codes(add_machine(api, member, group_id, as_=admin)) == ["CONFLICT"]
    assert error_codes(remove_machine(api, loose, as_=admin)) == ["CONFLICT"]

    assert group(api, group_id, as_=admin)["machines"] == [{"id": member}]
    assert group_of(api, member, as_=admin) == group_id
    assert group_of(api, loose, as_=admin) is None


# --- the owner's grant ------------------------------------------------------------------


def test_sharing_to_the_owner_answers_validation_and_revoking_them_permission_denied(
    api: Api, admin: Account, make_user: MakeUser, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    owner = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"], premium=True)
    co_owner = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"])
    group_id = make_group(owner=owner)
    machine_id, _ = make_machine(owner=owner)
    assert share_group(api, group_id, co_owner, "CO_OWNER", as_=owner)["errors"] == []
    assert share_machine(api, machine_id, co_owner, "CO_OWNER", as_=owner)["errors"] == []

    for actor in (owner, co_owner, admin):
        assert error_codes(share_group(api, group_id, owner, "USER", as_=actor)) == ["VALIDATION"]
        assert error_codes(share_machine(api, machine_id, owner, "USER", as_=actor)) == [
            "VALIDATION"
        ]
        assert error_codes(revoke_group(api, group_id, owner, as_=actor)) == ["PERMISSION_DENIED"]
        assert error_codes(revoke_machine(api, machine_id, owner, as_=actor)) == [
            "PERMISSION_DENIED"
        ]

    assert _access(api, group_id, owner) == [
        (owner.name, "OWNER", False),
        (co_owner.name, "CO_OWNER", False),
    ]
    assert group(api, group_id, as_=owner)["myAccess"] == "OWNER"
    machine = api.data(
        "query($m: ID!) { machine(id: $m) { myAccess } }", {"m": machine_id}, as_=owner
    )["machine"]
    assert machine == {"myAccess": "OWNER"}
