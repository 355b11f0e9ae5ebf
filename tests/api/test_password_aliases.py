"""Group password guessing through aliases: many guesses in one request are throttled too.

Each aliased mutation runs in its own transaction, one after another, and every wrong
guess is kept as a PasswordFailure row, so the fifth wrong guess throttles the group for
the rest of the same request. With the default alias limit a document of 50 guesses is
refused before any of them runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from app.db.models import PasswordFailure
from app.domain.clock import ManualClock
from app.settings import Settings
from tests.api.conftest import Account, Api
from tests.api.hardening_helpers import admin_account, error_messages, serving
from tests.api.helpers import PASSWORD, add_machine
from tests.server import LiveServer

GUESSES = 50


def guesses(machine_id: str, group_id: str, count: int) -> str:
    """One document, `count` aliased addMachineToGroup calls, each with another password."""
    calls = " ".join(
        f'g{i}: addMachineToGroup(input: {{machineId: "{machine_id}", groupId: "{group_id}",'
        f' password: "wrong guess {i:04d}"}}) {{ errors {{ code }} }}'
        for i in range(count)
    )
    return f"mutation {{ {calls} }}"


def codes(data: dict[str, Any]) -> list[str]:
    """Each alias's error code, in document order."""
    return [data[f"g{i}"]["errors"][0]["code"] for i in range(len(data))]


def failures(server: LiveServer, group_id: str) -> int:
    """The wrong guesses the throttle counts for the group."""

    async def count() -> int:
        async with server.state.db.read() as session:
            found = await session.scalar(
                select(func.count()).where(col(PasswordFailure.group_id) == group_id)
            )
            return found or 0

    return server.run(count())


def group_with_password(
    api: Api, admin: Account, make_group: Callable[..., str], make_machine: Callable[..., Any]
) -> tuple[str, str]:
    """A group whose password is set, and a standalone machine to guess with."""
    group_id = make_group()
    first, _ = make_machine()
    assert add_machine(api, first, group_id, as_=admin)["errors"] == []
    guesser, _ = make_machine()
    return group_id, guesser


def test_fifty_aliased_guesses_are_refused_whole_by_the_alias_limit(
    server: LiveServer,
    api: Api,
    admin: Account,
    settings: Settings,
    make_group: Callable[..., str],
    make_machine: Callable[..., Any],
) -> None:
    group_id, guesser = group_with_password(api, admin, make_group, make_machine)
    body = server.post(guesses(guesser, group_id, GUESSES), token=admin.token).json()
    assert body["data"] is None
    assert error_messages(body) == [f"{GUESSES} aliases found. Allowed: {settings.max_aliases}"]
    assert failures(server, group_id) == 0
    # Nothing ran: not even the throttle was touched, and the right password still works.
    assert add_machine(api, guesser, group_id, PASSWORD, as_=admin)["errors"] == []


def test_guesses_within_the_alias_limit_are_throttled_after_five(
    server: LiveServer,
    api: Api,
    admin: Account,
    settings: Settings,
    make_group: Callable[..., str],
    make_machine: Callable[..., Any],
) -> None:
    group_id, guesser = group_with_password(api, admin, make_group, make_machine)
    count = settings.max_aliases
    data = api.data(guesses(guesser, group_id, count), as_=admin)
    assert codes(data) == ["WRONG_GROUP_PASSWORD"] * 5 + ["TOO_MANY_ATTEMPTS"] * (count - 5)
    assert failures(server, group_id) == 5
    payload = add_machine(api, guesser, group_id, PASSWORD, as_=admin)
    assert [error["code"] for error in payload["errors"]] == ["TOO_MANY_ATTEMPTS"]


def test_fifty_aliased_guesses_count_as_fifty_tries_where_aliases_are_allowed(
    settings: Settings,
    clock: ManualClock,
) -> None:
    # A deployment that raises the alias limit still cannot guess faster: five wrong
    # guesses, then every other one is refused, the right password included.
    with serving(settings, clock, max_aliases=100) as server:
        api, admin = Api(server), admin_account(server)
        group_id = api.ok(
            'mutation { createMachineGroup(input: {name: "guarded"}) {'
            " machineGroup { id } errors { code } } }",
            as_=admin,
        )["machineGroup"]["id"]
        premium = (
            "mutation($id: ID!) { setUserPremium(userId: $id, premium: true) { errors { code } } }"
        )
        me = api.data("{ me { id } }", as_=admin)["me"]["id"]
        api.ok(premium, {"id": me}, as_=admin)
        register = (
            "mutation($n: String!) { registerMachine(input: {name: $n}) {"
            " machine { id } errors { code } } }"
        )
        first = api.ok(register, {"n": "first"}, as_=admin)["machine"]["id"]
        guesser = api.ok(register, {"n": "guesser"}, as_=admin)["machine"]["id"]
        assert add_machine(api, first, group_id, as_=admin)["errors"] == []

        data = api.data(guesses(guesser, group_id, GUESSES), as_=admin)

        assert codes(data) == ["WRONG_GROUP_PASSWORD"] * 5 + ["TOO_MANY_ATTEMPTS"] * 45
        assert failures(server, group_id) == 5
        payload = add_machine(api, guesser, group_id, PASSWORD, as_=admin)
        assert [error["code"] for error in payload["errors"]] == ["TOO_MANY_ATTEMPTS"]
