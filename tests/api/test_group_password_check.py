"""Adding a machine checks the group password outside the write transaction.

Argon2id takes about 0.1 s. It runs between a read that checks the caller's right and the
throttle and the write that checks them again and keeps the machine, so no other write
(on SQLite: every other writer; on PostgreSQL: a write to the same group) waits behind it,
and a caller who is refused anyway costs no Argon2id at all.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.api.conftest import Account, Api, MakeUser, error_codes
from tests.api.held_hasher import HeldHasher
from tests.api.helpers import add_machine, group_of, group_with_password, regenerate

MakeGroup = Callable[..., str]
MakeMachine = Callable[..., tuple[str, str]]
MAINTENANCE = """
mutation($g: ID!) { setMachineGroupMaintenance(id: $g, enabled: true) { errors { code } } }"""


def _write_to(api: Api, admin: Account, group_id: str) -> None:
    assert api.ok(MAINTENANCE, {"g": group_id}, as_=admin)["errors"] == []


def _while_held(
    hasher: HeldHasher,
    api: Api,
    admin: Account,
    machine_id: str,
    group_id: str,
    meanwhile: Callable[[], None],
) -> dict[str, Any]:
    """Add the machine with PASSWORD, doing `meanwhile` while its Argon2id call is held."""
    hasher.hold()
    with ThreadPoolExecutor(max_workers=1) as pool:
        adding = pool.submit(add_machine, api, machine_id, group_id, as_=admin)
        assert hasher.holding.wait(10)
        meanwhile()
        assert not adding.done()
        hasher.let_go()
        payload: dict[str, Any] = adding.result(timeout=30)
    return payload


def test_a_write_to_the_group_is_not_held_behind_the_password_check(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine, hasher: HeldHasher
) -> None:
    group_id = group_with_password(api, admin, make_group, make_machine)
    machine_id, _ = make_machine()

    payload = _while_held(
        hasher, api, admin, machine_id, group_id, lambda: _write_to(api, admin, group_id)
    )
    assert payload["errors"] == []
    assert group_of(api, machine_id, as_=admin) == group_id


def test_a_first_password_is_hashed_outside_the_write_and_then_works(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine, hasher: HeldHasher
) -> None:
    group_id = make_group()
    first, _ = make_machine()

    assert (
        _while_held(hasher, api, admin, first, group_id, lambda: _write_to(api, admin, group_id))[
            "errors"
        ]
        == []
    )
    assert hasher.hashes == 1
    second, _ = make_machine()
    assert error_codes(add_machine(api, second, group_id, "not the password!", as_=admin)) == [
        "WRONG_GROUP_PASSWORD"
    ]
    assert add_machine(api, second, group_id, as_=admin)["errors"] == []


def test_a_password_regenerated_during_the_check_is_checked_again(
    api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine, hasher: HeldHasher
) -> None:
    """The add proved PASSWORD against the old hash; the write finds a new one."""
    group_id = group_with_password(api, admin, make_group, make_machine)
    machine_id, _ = make_machine()
    fresh: list[str] = []

    def regenerate_meanwhile() -> None:
        payload = regenerate(api, group_id, as_=admin)
        assert payload["errors"] == []
        fresh.append(payload["password"])

    payload = _while_held(hasher, api, admin, machine_id, group_id, regenerate_meanwhile)
    assert error_codes(payload) == ["WRONG_GROUP_PASSWORD"]
    assert group_of(api, machine_id, as_=admin) is None
    assert add_machine(api, machine_id, group_id, fresh[0], as_=admin)["errors"] == []


def test_callers_refused_anyway_cost_no_argon2(
    api: Api,
    admin: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
    make_machine: MakeMachine,
    hasher: HeldHasher,
) -> None:
    group_id = group_with_password(api, admin, make_group, make_machine)
    empty_group = make_group()
    machine_id, _ = make_machine()
    stranger = make_user(roles=["DESKTOP_FLOWS_MACHINE_OWNER"], premium=True)
    strangers_machine, _ = make_machine(owner=stranger)
    before = (hasher.hashes, hasher.checks)

    # A group the caller does not see; a first password too short to keep.
    assert error_codes(add_machine(api, strangers_machine, group_id, as_=stranger)) == ["NOT_FOUND"]
    assert error_codes(add_machine(api, machine_id, empty_group, "short", as_=admin)) == [
        "VALIDATION"
    ]
    assert (hasher.hashes, hasher.checks) == before

    # Five wrong guesses are checked; once throttled, the sixth is refused unchecked.
    for attempt in range(5):
        guess = f"wrong guess number {attempt}"
        assert error_codes(add_machine(api, machine_id, group_id, guess, as_=admin)) == [
            "WRONG_GROUP_PASSWORD"
        ]
    assert hasher.checks == before[1] + 5
    assert error_codes(add_machine(api, machine_id, group_id, as_=admin)) == ["TOO_MANY_ATTEMPTS"]
    assert (hasher.hashes, hasher.checks) == (before[0], before[1] + 5)
