"""The group password: set by the first add, needed by later ones, regenerated, throttled."""

from __future__ import annotations

from collections.abc import Callable

from app.domain.clock import ManualClock
from tests.api.conftest import Account, Api, MakeUser, error_codes
from tests.api.helpers import (
    PASSWORD,
    add_machine,
    group,
    group_of,
    group_with_password,
    regenerate,
    share_group,
)

MakeGroup = Callable[..., str]
MakeMachine = Callable[..., tuple[str, str]]

WINDOW = 15 * 60


def _throttle(api: Api, admin: Account, group_id: str, machine_id: str) -> None:
    """Five wrong passwords: each answers WRONG_GROUP_PASSWORD."""
    for attempt in range(5):
        payload = add_machine(api, machine_id, group_id, f"wrong guess number {attempt}", as_=admin)
        assert error_codes(payload) == ["WRONG_GROUP_PASSWORD"], attempt


def test_the_first_add_sets_the_password(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    group_id = make_group()
    first, _ = make_machine()
    second, _ = make_machine()
    assert group(api, group_id, as_=admin)["hasPassword"] is False

    payload = add_machine(api, first, group_id, as_=admin)

    assert payload["errors"] == []
    assert payload["machine"]["group"] == {"id": group_id}
    state = group(api, group_id, as_=admin)
    assert state["hasPassword"] is True
    assert state["machines"] == [{"id": first}]
    # The password the first add chose is the one later adds need.
    assert add_machine(api, second, group_id, as_=admin)["errors"] == []
    assert group(api, group_id, as_=admin)["machineCount"] == 2


def test_a_first_password_under_12_characters_answers_validation_and_changes_nothing(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    group_id = make_group()
    machine_id, _ = make_machine()

    payload = add_machine(api, machine_id, group_id, "x" * 11, as_=admin)

    assert error_codes(payload) == ["VALIDATION"]
    assert payload["errors"][0]["field"] == "password"
    assert payload["machine"] is None
    state = group(api, group_id, as_=admin)
    assert (state["hasPassword"], state["machineCount"], state["machines"]) == (False, 0, [])
    assert group_of(api, machine_id, as_=admin) is None
    # Twelve characters is enough, and then that password is the group's.
    assert add_machine(api, machine_id, group_id, "y" * 12, as_=admin)["errors"] == []
    other, _ = make_machine()
    assert error_codes(add_machine(api, other, group_id, "x" * 11, as_=admin)) == [
        "WRONG_GROUP_PASSWORD"
    ]
    assert add_machine(api, other, group_id, "y" * 12, as_=admin)["errors"] == []


def test_a_later_add_with_a_wrong_password_answers_wrong_group_password(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    group_id = group_with_password(api, admin, make_group, make_machine)
    machine_id, _ = make_machine()

    for wrong in (PASSWORD + "!", PASSWORD.upper(), "short", ""):
        payload = add_machine(api, machine_id, group_id, wrong, as_=admin)
        assert error_codes(payload) == ["WRONG_GROUP_PASSWORD"], wrong
        assert payload["errors"][0]["field"] == "password"

    assert group_of(api, machine_id, as_=admin) is None
    assert group(api, group_id, as_=admin)["machineCount"] == 1
    assert add_machine(api, machine_id, group_id, as_=admin)["errors"] == []


def test_regenerating_returns_a_new_password_and_the_old_one_stops_working(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    group_id = group_with_password(api, admin, make_group, make_machine)
    machine_id, _ = make_machine()

    payload = regenerate(api, group_id, as_=admin)

    assert payload["errors"] == []
    new = payload["password"]
    assert isinstance(new, str) and len(new) >= 12 and new != PASSWORD
    assert error_codes(add_machine(api, machine_id, group_id, PASSWORD, as_=admin)) == [
        "WRONG_GROUP_PASSWORD"
    ]
    assert add_machine(api, machine_id, group_id, new, as_=admin)["errors"] == []
    # Each regeneration makes another one.
    again = regenerate(api, group_id, as_=admin)["password"]
    assert again not in (new, PASSWORD)


def test_a_user_level_holder_cannot_regenerate_and_the_password_stays(
    api: Api,
    admin: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
    make_machine: MakeMachine,
) -> None:
    group_id = group_with_password(api, admin, make_group, make_machine)
    runner = make_user(roles=["ENVIRONMENT_MAKER"])
    assert share_group(api, group_id, runner, "USER", as_=admin)["errors"] == []

    payload = regenerate(api, group_id, as_=runner)

    assert error_codes(payload) == ["PERMISSION_DENIED"]
    assert payload["password"] is None
    machine_id, _ = make_machine()
    assert add_machine(api, machine_id, group_id, as_=admin)["errors"] == []


def test_five_wrong_passwords_throttle_the_group_even_for_the_right_one(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    group_id = group_with_password(api, admin, make_group, make_machine)
    machine_id, _ = make_machine()
    _throttle(api, admin, group_id, machine_id)

    sixth = add_machine(api, machine_id, group_id, "another wrong guess", as_=admin)
    right = add_machine(api, machine_id, group_id, PASSWORD, as_=admin)

    assert error_codes(sixth) == ["TOO_MANY_ATTEMPTS"]
    assert error_codes(right) == ["TOO_MANY_ATTEMPTS"]
    assert group_of(api, machine_id, as_=admin) is None
    assert group(api, group_id, as_=admin)["machineCount"] == 1


def test_the_throttle_ends_after_15_minutes(
    api: Api,
    admin: Account,
    make_group: MakeGroup,
    make_machine: MakeMachine,
    clock: ManualClock,
) -> None:
    group_id = group_with_password(api, admin, make_group, make_machine)
    machine_id, _ = make_machine()
    _throttle(api, admin, group_id, machine_id)

    clock.advance(WINDOW - 60)
    assert error_codes(add_machine(api, machine_id, group_id, as_=admin)) == ["TOO_MANY_ATTEMPTS"]
    clock.advance(61)
    assert add_machine(api, machine_id, group_id, as_=admin)["errors"] == []
    assert group_of(api, machine_id, as_=admin) == group_id


def test_wrong_passwords_spread_over_more_than_15_minutes_do_not_throttle(
    api: Api,
    admin: Account,
    make_group: MakeGroup,
    make_machine: MakeMachine,
    clock: ManualClock,
) -> None:
    group_id = group_with_password(api, admin, make_group, make_machine)
    machine_id, _ = make_machine()
    for attempt in range(4):
        payload = add_machine(api, machine_id, group_id, f"wrong guess {attempt}", as_=admin)
        assert error_codes(payload) == ["WRONG_GROUP_PASSWORD"]
    clock.advance(WINDOW + 1)

    fifth = add_machine(api, machine_id, group_id, "wrong guess again", as_=admin)

    assert error_codes(fifth) == ["WRONG_GROUP_PASSWORD"]
    assert add_machine(api, machine_id, group_id, as_=admin)["errors"] == []


def test_the_throttle_counts_every_users_guesses_on_the_group(
    api: Api,
    admin: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
    make_machine: MakeMachine,
) -> None:
    group_id = group_with_password(api, admin, make_group, make_machine)
    guesser = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"], premium=True)
    assert share_group(api, group_id, guesser, "CO_OWNER", as_=admin)["errors"] == []
    their_machine, _ = make_machine(owner=guesser)
    for attempt in range(5):
        payload = add_machine(api, their_machine, group_id, f"guess {attempt}", as_=guesser)
        assert error_codes(payload) == ["WRONG_GROUP_PASSWORD"]

    machine_id, _ = make_machine()
    assert error_codes(add_machine(api, machine_id, group_id, as_=admin)) == ["TOO_MANY_ATTEMPTS"]


def test_guesses_by_those_who_may_not_add_do_not_count(
    api: Api,
    admin: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
    make_machine: MakeMachine,
) -> None:
    group_id = group_with_password(api, admin, make_group, make_machine)
    stranger = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"], premium=True)
    runner = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"], premium=True)
    assert share_group(api, group_id, runner, "USER", as_=admin)["errors"] == []
    for guesser, code in ((stranger, "NOT_FOUND"), (runner, "PERMISSION_DENIED")):
        their_machine, _ = make_machine(owner=guesser)
        for attempt in range(5):
            payload = add_machine(api, their_machine, group_id, f"guess {attempt}", as_=guesser)
            assert error_codes(payload) == [code]

    machine_id, _ = make_machine()
    assert add_machine(api, machine_id, group_id, as_=admin)["errors"] == []


def test_the_throttle_is_per_group(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    throttled = group_with_password(api, admin, make_group, make_machine)
    other = group_with_password(api, admin, make_group, make_machine)
    machine_id, _ = make_machine()
    _throttle(api, admin, throttled, machine_id)

    assert add_machine(api, machine_id, other, as_=admin)["errors"] == []


def test_regenerating_lifts_a_throttle(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    group_id = group_with_password(api, admin, make_group, make_machine)
    machine_id, _ = make_machine()
    _throttle(api, admin, group_id, machine_id)
    assert error_codes(add_machine(api, machine_id, group_id, as_=admin)) == ["TOO_MANY_ATTEMPTS"]

    new = regenerate(api, group_id, as_=admin)["password"]

    # The earlier guesses no longer count: one more wrong one does not throttle again.
    wrong = add_machine(api, machine_id, group_id, "yet another guess", as_=admin)
    assert error_codes(wrong) == ["WRONG_GROUP_PASSWORD"]
    assert add_machine(api, machine_id, group_id, new, as_=admin)["errors"] == []
    assert group_of(api, machine_id, as_=admin) == group_id


def test_moving_a_machine_needs_the_new_groups_password(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine
) -> None:
    source = make_group()
    target = make_group()
    machine_id, _ = make_machine()
    other, _ = make_machine()
    assert add_machine(api, machine_id, source, as_=admin)["errors"] == []
    assert add_machine(api, other, target, "the target's own secret", as_=admin)["errors"] == []

    wrong = add_machine(api, machine_id, target, PASSWORD, as_=admin)

    assert error_codes(wrong) == ["WRONG_GROUP_PASSWORD"]
    assert group_of(api, machine_id, as_=admin) == source
    moved = add_machine(api, machine_id, target, "the target's own secret", as_=admin)
    assert moved["errors"] == []
    assert group_of(api, machine_id, as_=admin) == target
    assert group(api, source, as_=admin)["machineCount"] == 0
