"""Regenerating a group password: hashed outside the write transaction, throttled per group.

Argon2id takes about 0.1 s: it runs between a read that checks the caller's right and
the throttle and a short write that checks them again and stores the hash, so no other
write waits behind it, and a caller who may not regenerate costs no hash.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from app.domain.clock import ManualClock
from app.domain.passwords import MAX_REGENERATIONS, REGENERATION_WINDOW
from tests.api.conftest import Account, Api, MakeUser, error_codes
from tests.api.held_hasher import HeldHasher
from tests.api.helpers import PASSWORD, add_machine, group_of, regenerate, revoke_group, share_group
from tests.server import LiveServer

MakeGroup = Callable[..., str]
MakeMachine = Callable[..., tuple[str, str]]
ALIASES = 15  # MG_MAX_ALIASES: the most one document may ask for
MAINTENANCE = """
mutation($g: ID!) { setMachineGroupMaintenance(id: $g, enabled: true) { errors { code } } }"""


@pytest.fixture
def group_id(api: Api, admin: Account, make_group: MakeGroup, make_machine: MakeMachine) -> str:
    """A group whose first machine set PASSWORD."""
    made = make_group()
    first, _ = make_machine()
    assert add_machine(api, first, made, as_=admin)["errors"] == []
    return made


def aliased_regenerations(group: str, count: int) -> str:
    fields = "password errors { code message }"
    calls = " ".join(
        f'r{i}: regenerateMachineGroupPassword(id: "{group}") {{ {fields} }}' for i in range(count)
    )
    return f"mutation {{ {calls} }}"


def test_aliased_regenerations_are_throttled_and_only_the_last_password_works(
    api: Api,
    admin: Account,
    clock: ManualClock,
    make_machine: MakeMachine,
    group_id: str,
    hasher: HeldHasher,
) -> None:
    data = api.data(aliased_regenerations(group_id, ALIASES), as_=admin)
    payloads = [data[f"r{i}"] for i in range(ALIASES)]

    allowed, refused = payloads[:MAX_REGENERATIONS], payloads[MAX_REGENERATIONS:]
    assert [p["errors"] for p in allowed] == [[]] * MAX_REGENERATIONS
    assert [error_codes(p) for p in refused] == [["TOO_MANY_ATTEMPTS"]] * len(refused)
    assert {p["password"] for p in refused} == {None}
    window = int(REGENERATION_WINDOW.total_seconds())
    assert f"try again in {window} s" in refused[0]["errors"][0]["message"]
    # The refused ones were refused before hashing.
    assert hasher.hashes == MAX_REGENERATIONS
    # Only the last password given out works.
    machine_id, _ = make_machine()
    *earlier, last = [p["password"] for p in allowed]
    for stale in (PASSWORD, *earlier):
        wrong = add_machine(api, machine_id, group_id, stale, as_=admin)
        assert error_codes(wrong) == ["WRONG_GROUP_PASSWORD"]
    assert add_machine(api, machine_id, group_id, last, as_=admin)["errors"] == []

    # Once the window has passed since the first of them, it may be regenerated again.
    clock.advance(window - 1)
    assert error_codes(regenerate(api, group_id, as_=admin)) == ["TOO_MANY_ATTEMPTS"]
    clock.advance(1)
    assert regenerate(api, group_id, as_=admin)["errors"] == []


def test_a_write_is_not_held_behind_the_hashing(
    api: Api, admin: Account, group_id: str, hasher: HeldHasher, make_machine: MakeMachine
) -> None:
    hasher.hold()
    with ThreadPoolExecutor(max_workers=1) as pool:
        regenerating = pool.submit(regenerate, api, group_id, as_=admin)
        assert hasher.holding.wait(10)
        # The regeneration is in flight, hashing: a write to the very same group goes
        # through meanwhile (it waited for the hash while the hash held the write lock).
        assert api.ok(MAINTENANCE, {"g": group_id}, as_=admin)["errors"] == []
        assert not regenerating.done()
        hasher.let_go()
        payload: dict[str, Any] = regenerating.result(timeout=30)
    assert payload["errors"] == []
    machine_id, _ = make_machine()
    assert add_machine(api, machine_id, group_id, payload["password"], as_=admin)["errors"] == []


def test_a_caller_who_may_not_regenerate_costs_no_hash(
    api: Api, admin: Account, make_user: MakeUser, group_id: str, hasher: HeldHasher
) -> None:
    runner = make_user(roles=["ENVIRONMENT_MAKER"])
    stranger = make_user(roles=["ENVIRONMENT_MAKER"])
    assert share_group(api, group_id, runner, "USER", as_=admin)["errors"] == []

    assert error_codes(regenerate(api, group_id, as_=runner)) == ["PERMISSION_DENIED"]
    assert error_codes(regenerate(api, group_id, as_=stranger)) == ["NOT_FOUND"]
    assert hasher.hashes == 0


def test_access_lost_during_the_hashing_reveals_nothing_and_changes_nothing(
    api: Api,
    admin: Account,
    make_user: MakeUser,
    make_machine: MakeMachine,
    group_id: str,
    hasher: HeldHasher,
) -> None:
    co_owner = make_user(roles=["ENVIRONMENT_MAKER"])
    assert share_group(api, group_id, co_owner, "CO_OWNER", as_=admin)["errors"] == []
    hasher.hold()
    with ThreadPoolExecutor(max_workers=1) as pool:
        regenerating = pool.submit(regenerate, api, group_id, as_=co_owner)
        assert hasher.holding.wait(10)
        assert revoke_group(api, group_id, co_owner, as_=admin)["errors"] == []
        hasher.let_go()
        payload: dict[str, Any] = regenerating.result(timeout=30)

    assert error_codes(payload) == ["NOT_FOUND"]
    assert payload["password"] is None
    machine_id, _ = make_machine()
    assert add_machine(api, machine_id, group_id, PASSWORD, as_=admin)["errors"] == []
    assert group_of(api, machine_id, as_=admin) == group_id


def test_the_throttle_holds_for_each_group_alone(
    server: LiveServer, api: Api, admin: Account, make_group: MakeGroup, group_id: str
) -> None:
    for _ in range(MAX_REGENERATIONS):
        assert regenerate(api, group_id, as_=admin)["errors"] == []
    assert error_codes(regenerate(api, group_id, as_=admin)) == ["TOO_MANY_ATTEMPTS"]
    assert regenerate(api, make_group(), as_=admin)["errors"] == []
