"""Admins edit policies/ on a running server: valid edits apply within 2 s, others never."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.clock import ManualClock
from app.settings import Settings
from tests.api.conftest import Account, Api, MakeUser
from tests.conftest import POLICIES
from tests.policy_cases import BROKEN, MODEL, POLICY
from tests.server import LiveServer

APPLY_WITHIN = 2.0
REGISTER_LINE = "p, environment-maker, machine, register\n"
STATUS = "{ policyStatus { loadedAt checksum lastError } }"
REGISTER = 'mutation { registerMachine(input: {name: "VM"}) { machine { id } errors { code } } }'


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A copy of the shipped policy folder that the test edits."""
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    return folder


@pytest.fixture
def server(settings: Settings, clock: ManualClock, policy_dir: Path) -> Iterator[LiveServer]:
    live = LiveServer(dataclasses.replace(settings, policy_dir=policy_dir), clock).start()
    yield live
    live.stop()


def eventually(check: Callable[[], Any], within: float = APPLY_WITHIN) -> Any:
    """Poll `check` until it returns something truthy, failing after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within} s")
        time.sleep(0.05)


def register_code(api: Api, maker: Account) -> str:
    payload = api.mutate(REGISTER, as_=maker)
    return "ALLOWED" if not payload["errors"] else str(payload["errors"][0]["code"])


@pytest.fixture
def maker(make_user: MakeUser) -> Account:
    return make_user(roles=["ENVIRONMENT_MAKER"], premium=True)


def test_removing_a_line_takes_the_privilege_away_within_two_seconds(
    api: Api, admin: Account, maker: Account, policy_dir: Path
) -> None:
    policy = policy_dir / "policy.csv"
    original = policy.read_text()
    assert register_code(api, maker) == "ALLOWED"
    before = api.data(STATUS, as_=admin)["policyStatus"]

    policy.write_text(original.replace(REGISTER_LINE, ""))
    eventually(lambda: register_code(api, maker) == "PERMISSION_DENIED")
    after = api.data(STATUS, as_=admin)["policyStatus"]
    assert after["checksum"] != before["checksum"]
    assert after["lastError"] is None

    policy.write_text(original)
    eventually(lambda: register_code(api, maker) == "ALLOWED")
    assert api.data(STATUS, as_=admin)["policyStatus"]["checksum"] == before["checksum"]


def _half_written(text: str) -> str:
    return text[: len(text) // 2]


BAD_EDITS: dict[str, Callable[[str], str]] = {
    "garbage": lambda _text: "\x00\x01 this is not a policy {{{\n",
    "empty": lambda _text: "",
    "unknown role": lambda text: text.replace(
        "p, desktop-flows-machine-owner, machine, register",
        "p, desktop-flows-machine-ownr, machine, register",
    ),
    "half-written": _half_written,
}


@pytest.mark.parametrize("edit", list(BAD_EDITS))
def test_a_bad_edit_changes_no_decision_and_shows_its_error(
    api: Api, admin: Account, maker: Account, policy_dir: Path, edit: str
) -> None:
    policy = policy_dir / "policy.csv"
    original = policy.read_text()
    checksum = api.data(STATUS, as_=admin)["policyStatus"]["checksum"]

    # The bad file also drops the register line: were it applied, registering would stop.
    policy.write_text(BAD_EDITS[edit](original.replace(REGISTER_LINE, "")))
    status = eventually(
        lambda: (
            api.data(STATUS, as_=admin)["policyStatus"]["lastError"]
            and api.data(STATUS, as_=admin)["policyStatus"]
        )
    )
    assert status["checksum"] == checksum
    assert register_code(api, maker) == "ALLOWED"

    policy.write_text(original)
    eventually(lambda: api.data(STATUS, as_=admin)["policyStatus"]["lastError"] is None)
    assert register_code(api, maker) == "ALLOWED"


def test_the_unknown_role_error_names_the_line(api: Api, admin: Account, policy_dir: Path) -> None:
    policy = policy_dir / "policy.csv"
    text = policy.read_text()
    line = text.splitlines().index("p, desktop-flows-machine-owner, machine, register") + 1
    policy.write_text(
        text.replace(
            "desktop-flows-machine-owner, machine, register",
            "desktop-flows-machine-ownr, machine, register",
        )
    )
    error = eventually(lambda: api.data(STATUS, as_=admin)["policyStatus"]["lastError"])
    assert f"policy.csv line {line}" in error
    assert "desktop-flows-machine-ownr" in error


def test_taking_every_privilege_from_a_role_needs_saying_so(
    api: Api, admin: Account, policy_dir: Path
) -> None:
    policy = policy_dir / "policy.csv"
    checksum = api.data(STATUS, as_=admin)["policyStatus"]["checksum"]
    kept = [
        line
        for line in policy.read_text().splitlines(keepends=True)
        if not line.startswith("p, desktop-flows-machine-user,")
    ]
    policy.write_text("".join(kept))
    error = eventually(lambda: api.data(STATUS, as_=admin)["policyStatus"]["lastError"])
    assert "desktop-flows-machine-user" in error
    assert api.data(STATUS, as_=admin)["policyStatus"]["checksum"] == checksum

    policy.write_text("".join(kept) + "# no-privileges: desktop-flows-machine-user\n")
    eventually(lambda: api.data(STATUS, as_=admin)["policyStatus"]["lastError"] is None)
    assert api.data(STATUS, as_=admin)["policyStatus"]["checksum"] != checksum


def test_policy_status_is_for_system_administrators_only(api: Api, maker: Account) -> None:
    body = api.execute(STATUS, as_=maker)
    assert body["data"] is None
    assert "system administrators" in body["errors"][0]["message"]


def test_applied_and_rejected_edits_are_in_the_audit_trail(
    api: Api, admin: Account, policy_dir: Path
) -> None:
    policy = policy_dir / "policy.csv"
    original = policy.read_text()
    policy.write_text("")
    eventually(lambda: api.data(STATUS, as_=admin)["policyStatus"]["lastError"])
    policy.write_text(original.replace(REGISTER_LINE, ""))
    eventually(lambda: api.data(STATUS, as_=admin)["policyStatus"]["lastError"] is None)
    applied = api.data(STATUS, as_=admin)["policyStatus"]["checksum"]

    def both_entries() -> list[dict[str, Any]]:
        edges: list[dict[str, Any]] = api.data(
            "{ auditLog(kind: [POLICY_APPLIED, POLICY_REJECTED]) { edges { node {"
            " kind outcome actor { name } detail } } } }",
            as_=admin,
        )["auditLog"]["edges"]
        return edges if len(edges) >= 2 else []

    # The entry is written just after the edit takes effect, so it may trail the status.
    log = eventually(both_entries)
    kinds = [edge["node"]["kind"] for edge in log]
    assert kinds == ["POLICY_APPLIED", "POLICY_REJECTED"]  # newest first
    assert log[0]["node"]["detail"]["checksum"] == applied
    assert log[0]["node"]["actor"] is None
    assert log[1]["node"]["outcome"] == "FAILURE"
    assert log[1]["node"]["detail"]["error"]


def status(api: Api, admin: Account) -> dict[str, Any]:
    policy_status: dict[str, Any] = api.data(STATUS, as_=admin)["policyStatus"]
    return policy_status


def readiness(server: LiveServer) -> httpx.Response:
    return server.http.get(server.url.removesuffix("/graphql") + "/readyz")


def write_valid_edit_without_register(policy_dir: Path) -> None:
    """A valid edit that takes `register` from environment makers."""
    (policy_dir / "model.conf").write_text(MODEL)
    (policy_dir / "policy.csv").write_text(POLICY.replace(REGISTER_LINE, ""))


@pytest.mark.parametrize(
    "case",
    ["no matchers", "matcher naming an unknown function", "unknown effect", "model not UTF-8"],
)
def test_a_model_the_engine_cannot_use_is_rejected_and_the_watch_goes_on(
    api: Api,
    admin: Account,
    maker: Account,
    server: LiveServer,
    policy_dir: Path,
    case: str,
) -> None:
    checksum = status(api, admin)["checksum"]
    BROKEN[case].write(policy_dir)
    error = eventually(lambda: status(api, admin)["lastError"])
    assert BROKEN[case].says in error
    assert status(api, admin)["checksum"] == checksum
    assert register_code(api, maker) == "ALLOWED"  # the last good policy still decides
    # Ready (the last good policy serves), with the rejected edit's reason.
    probe = readiness(server)
    assert probe.status_code == 200
    assert probe.json()["policy"] == checksum[:12]
    assert probe.json()["policyError"] == error

    # The watch survived: a valid edit still applies within 2 s.
    write_valid_edit_without_register(policy_dir)
    eventually(lambda: register_code(api, maker) == "PERMISSION_DENIED")
    assert status(api, admin)["lastError"] is None
    assert readiness(server).json()["policyError"] is None


def test_a_folder_deleted_then_deployed_again_is_watched_afresh(
    api: Api, admin: Account, maker: Account, policy_dir: Path
) -> None:
    shutil.rmtree(policy_dir)
    error = eventually(lambda: status(api, admin)["lastError"])
    assert error == f"{policy_dir}: no such folder"
    assert register_code(api, maker) == "ALLOWED"

    staging = policy_dir.parent / "staging"
    shutil.copytree(POLICIES, staging)
    write_valid_edit_without_register(staging)
    staging.rename(policy_dir)
    eventually(lambda: register_code(api, maker) == "PERMISSION_DENIED")
    assert status(api, admin)["lastError"] is None

    # Edits of the new folder apply too.
    (policy_dir / "policy.csv").write_text(POLICY)
    eventually(lambda: register_code(api, maker) == "ALLOWED")


def test_the_watch_outlives_an_audit_trail_it_cannot_write(
    api: Api,
    maker: Account,
    server: LiveServer,
    policy_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="app.authz.reload")
    with server.database_unreachable():
        write_valid_edit_without_register(policy_dir)
        eventually(lambda: "could not record the policy outcome" in caplog.text)
    assert register_code(api, maker) == "PERMISSION_DENIED"  # applied all the same

    (policy_dir / "policy.csv").write_text(POLICY)
    eventually(lambda: register_code(api, maker) == "ALLOWED")
