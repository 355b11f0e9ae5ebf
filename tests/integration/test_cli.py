"""The `machine-groups` command, run as a real process against a real SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy.engine import make_url

from app.domain.clock import ManualClock
from app.domain.enums import SecurityRole
from app.settings import Settings, load_settings
from app.state import AppState
from tests.conftest import POLICIES, REPO
from tests.databases import POSTGRES_URL
from tests.policy_cases import BROKEN
from tests.server import LiveServer

DATABASE = "machine-groups.db"  # the default database, in the working directory

KEY = "cli-test-secret-key-0123456789abcdef0123456789"
WIDE = "120"  # columns, so that help text keeps role names whole


def run_cli(
    folder: Path,
    *args: str,
    key: str | None = KEY,
    settings: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the command in `folder` with the service's settings in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MG_")}
    env["PYTHONPATH"] = str(REPO)
    env["MG_POLICY_DIR"] = str(POLICIES)
    env["COLUMNS"] = WIDE
    if key is not None:
        env["MG_SECRET_KEY"] = key
    env.update(settings or {})
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused_in_words(result: subprocess.CompletedProcess[str], says: str) -> str:
    """Exit 1 with one line on stderr that says `says`, and no traceback anywhere."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert says in line, line
    return line


@dataclass(frozen=True)
class Served:
    """A folder where a server has started, and the settings it started with."""

    folder: Path
    variables: dict[str, str]  # its MG_* variables (on SQLite: none, its defaults there)
    settings: Settings  # the same settings, with the database's path made absolute

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The command, run there with the server's variables."""
        return run_cli(self.folder, *args, key=None, settings=self.variables)

    def ok(self, *args: str) -> str:
        """The output of a command that must succeed."""
        result = self.cli(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Served:
    """A folder where `machine-groups serve` has started (and stopped): on SQLite with its
    defaults there (the database and the generated key file in the folder); on
    PostgreSQL with MG_DATABASE_URL and MG_SECRET_KEY."""
    folder = tmp_path / "server"
    folder.mkdir()
    variables = {}
    if POSTGRES_URL is not None:
        variables = {"MG_DATABASE_URL": database_url, "MG_SECRET_KEY": KEY}
    with contextlib.chdir(folder):
        settings = load_settings({**variables, "MG_POLICY_DIR": str(POLICIES)})

    async def start_and_stop() -> None:
        state = AppState.build(settings)
        await state.start()
        await state.stop()

    if POSTGRES_URL is None:
        settings = replace(settings, database_url=f"sqlite+aiosqlite:///{folder / DATABASE}")
    asyncio.run(start_and_stop())
    return Served(folder, variables, replace(settings, sweep_interval=3600))


@pytest.fixture
def live(served: Served, clock: ManualClock) -> Iterator[LiveServer]:
    """The server of the served folder, running."""
    server = LiveServer(served.settings, clock).start()
    yield server
    server.stop()


COMMANDS = [
    ("token", "admin"),
    ("users", "list"),
    ("users", "create", "dana"),
    ("users", "update", "admin", "--premium"),
    ("users", "deactivate", "admin"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_command_run_elsewhere_says_where_it_looked_and_creates_nothing(
    tmp_path: Path, served: Served, args: tuple[str, ...]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli(elsewhere, *args, key=None)  # MG_POLICY_DIR set, as a user may have it
    line = assert_refused_in_words(result, f"no database at {elsewhere / DATABASE}: ")
    assert "`machine-groups serve`" in line and "MG_DATABASE_URL" in line
    assert list(elsewhere.iterdir()) == []


def test_a_database_no_server_made_is_named_and_left_alone(
    tmp_path: Path, database_url: str
) -> None:
    result = run_cli(tmp_path, "token", "admin", settings={"MG_DATABASE_URL": database_url})
    if POSTGRES_URL is None:
        assert_refused_in_words(result, f"no database at {tmp_path / 'test.db'}: ")
        assert list(tmp_path.iterdir()) == []
    else:  # the database exists, empty: it is not migrated, nothing is written to it
        shown = make_url(database_url).render_as_string(hide_password=True)
        line = assert_refused_in_words(result, f"the database at {shown} holds no Machine")
        assert "MG_DATABASE_URL" in line


def test_without_the_servers_key_the_command_says_which_variable_to_set(served: Served) -> None:
    key_file = served.folder / f"{DATABASE}.secret"
    if POSTGRES_URL is None:
        key_file.unlink()  # as if the server ran with MG_SECRET_KEY
        variables = served.variables
    else:
        variables = {k: v for k, v in served.variables.items() if k != "MG_SECRET_KEY"}
    result = run_cli(served.folder, "token", "admin", key=None, settings=variables)
    assert "MG_SECRET_KEY" in assert_refused_in_words(result, "MG_SECRET_KEY")
    assert not key_file.exists()


def test_a_token_from_the_command_line_is_accepted_by_the_server(
    served: Served, live: LiveServer
) -> None:
    token = served.ok("token", "admin").strip()
    response = live.post("{ me { name } }", token=token)
    assert response.json() == {"data": {"me": {"name": "admin"}}}
    assert jwt.decode(token, options={"verify_signature": False})["name"] == "admin"


REGISTER = """mutation { registerMachine(input: {name: "VM-1"}) {
  machine { id } errors { code message } } }"""
AUDIT = """{ auditLog(first: 100) { edges { node {
  kind actor { name } subjectUser { name } recordKind detail } } } }"""


SET_PREMIUM = """mutation($u: ID!) { setUserPremium(userId: $u, premium: true) {
  errors { code } } }"""


def audit_log(server: LiveServer, token: str) -> list[dict[str, Any]]:
    """The audit trail, newest first."""
    edges = server.post(AUDIT, token=token).json()["data"]["auditLog"]["edges"]
    return [edge["node"] for edge in edges]


def listed(output: str) -> dict[str, tuple[str, str, str]]:
    """`users list` (or update) output: name -> (premium, deactivated, roles)."""
    header, *rows = output.strip().splitlines()
    assert header.split()[:3] == ["NAME", "PREMIUM", "DEACTIVATED"]
    table = {}
    for row in rows:
        name, premium, deactivated, roles = row.split(maxsplit=3)
        table[name] = (premium, deactivated, roles)
    return table


def test_users_commands_change_what_the_server_decides_and_are_audited(
    served: Served, live: LiveServer
) -> None:
    admin = served.ok("token", "admin").strip()
    # The bootstrapped administrator is not premium: the command line fixes that.
    refused = live.post(REGISTER, token=admin).json()["data"]["registerMachine"]
    assert [error["code"] for error in refused["errors"]] == ["PREMIUM_REQUIRED"]
    assert listed(served.ok("users", "list")) == {
        "admin": ("no", "no", "default: system-administrator")
    }
    assert listed(served.ok("users", "update", "admin", "--premium")) == {
        "admin": ("yes", "no", "default: system-administrator")
    }
    assert live.post(REGISTER, token=admin).json()["data"]["registerMachine"]["errors"] == []

    assert "created user dana" in served.ok(
        "users", "create", "dana", "--role", "environment-maker"
    )
    changed = served.ok(
        "users",
        "update",
        "DANA",
        "--premium",
        "--role",
        "desktop-flows-machine-user",
        "--remove-role",
        "environment-maker",
        "--environment",
        "Default",
    )
    assert listed(changed) == {"dana": ("yes", "no", "default: desktop-flows-machine-user")}
    dana = served.ok("token", "dana").strip()
    assert live.post("{ me { securityRoles } }", token=dana).json() == {
        "data": {"me": {"securityRoles": ["DESKTOP_FLOWS_MACHINE_USER"]}}
    }

    assert "deactivated user dana" in served.ok("users", "deactivate", "dana")
    response = live.post("{ me { name } }", token=dana)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "TOKEN_USER_DEACTIVATED"
    assert listed(served.ok("users", "list"))["dana"][:2] == ("yes", "yes")

    # Each change is in the audit trail as the API's would be, by no user, via the
    # command line.
    entries = [
        edge["node"] for edge in live.post(AUDIT, token=admin).json()["data"]["auditLog"]["edges"]
    ]
    by_command_line = [
        (entry["kind"], entry["subjectUser"]["name"], entry["detail"])
        for entry in reversed(entries)
        if entry["actor"] is None and entry["kind"] != "POLICY_APPLIED"
    ]
    via = {"via": "command line"}
    assert by_command_line == [
        ("USER_PREMIUM_CHANGED", "admin", {"premium": True, **via}),
        ("USER_CREATED", "dana", {"premium": False, **via}),
        ("ROLE_ASSIGNED", "dana", {"role": "ENVIRONMENT_MAKER", **via}),
        ("USER_PREMIUM_CHANGED", "dana", {"premium": True, **via}),
        ("ROLE_ASSIGNED", "dana", {"role": "DESKTOP_FLOWS_MACHINE_USER", **via}),
        ("ROLE_REMOVED", "dana", {"role": "ENVIRONMENT_MAKER", **via}),
        ("USER_DEACTIVATED", "dana", via),
    ]


def test_the_same_change_through_the_api_is_audited_alike(served: Served, live: LiveServer) -> None:
    admin = served.ok("token", "admin").strip()
    admin_id = live.post("{ me { id } }", token=admin).json()["data"]["me"]["id"]
    set_premium = (
        "mutation($u: ID!) { setUserPremium(userId: $u, premium: true) { errors { code } } }"
    )
    assert live.post(set_premium, {"u": admin_id}, token=admin).json()["data"]
    (entry,) = [
        edge["node"]
        for edge in live.post(AUDIT, token=admin).json()["data"]["auditLog"]["edges"]
        if edge["node"]["kind"] == "USER_PREMIUM_CHANGED"
    ]
    assert (entry["actor"], entry["subjectUser"], entry["detail"]) == (
        {"name": "admin"},
        {"name": "admin"},
        {"premium": True},
    )


@pytest.mark.parametrize("command", ["create", "update"])
def test_role_help_lists_the_roles(tmp_path: Path, command: str) -> None:
    result = run_cli(tmp_path, "users", command, "--help")
    assert result.returncode == 0, result.stderr
    text = re.sub(r"-\n\s*", "-", result.stdout)  # a name wrapped at one of its hyphens
    for role in SecurityRole:
        assert role.policy_name in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("users", "create", "eve", "--role", "desktop-flows-machine-ownr"), "unknown role"),
        (("token", "nobody"), "no user named 'nobody'"),
        (("users", "create", "  "), "VALIDATION"),
        (("users", "update", "admin"), "nothing to change"),
        (("users", "update", "nobody", "--premium"), "no user named 'nobody'"),
        (("users", "deactivate", "nobody"), "no user named 'nobody'"),
        (
            ("users", "update", "admin", "--role", "environment-maker", "--environment", "x"),
            "no environment named 'x'; the environments: default",
        ),
        (
            ("users", "update", "admin", "--remove-role", "system-administrator"),
            "CONFLICT: an environment keeps at least one active system administrator",
        ),
        (("users", "deactivate", "admin"), "this would leave none in default"),
    ],
)
def test_bad_input_exits_non_zero_with_a_clear_message(
    served: Served, args: tuple[str, ...], message: str
) -> None:
    assert_refused_in_words(served.cli(*args), message)


def test_a_duplicate_user_is_refused(served: Served) -> None:
    served.ok("users", "create", "dana")
    assert_refused_in_words(served.cli("users", "create", "DANA"), "CONFLICT")


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(tmp_path, "serve", "--port", str(port))
    line = assert_refused_in_words(result, f"port {port} on 127.0.0.1 is in use")
    assert "--port" in line
    assert result.stdout == ""  # no banner
    assert list(tmp_path.iterdir()) == []  # nothing made before it said so


def permissions_table(output: str) -> dict[tuple[str, str, str], bool]:
    """(object, subject, action) -> allowed, read back from `policy check`'s tables."""
    table: dict[tuple[str, str, str], bool] = {}
    for block in output.split("\n\n")[1:]:
        header, *rows = block.strip().splitlines()
        kind, *actions = header.split()
        for row in rows:
            subject, *marks = row.split()
            table.update(
                {(kind, subject, a): m == "X" for a, m in zip(actions, marks, strict=True)}
            )
    return table


def test_policy_check_prints_what_each_role_may_do(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "policy", "check", str(POLICIES))
    assert result.returncode == 0, result.stderr
    table = permissions_table(result.stdout)
    assert table["machine", "environment-maker", "register"]
    assert not table["machine", "desktop-flows-machine-user", "register"]
    assert table["machine_group", "desktop-flows-machine-user-can-share", "share"]
    assert not table["machine_group", "user", "edit"]
    assert len(table) == 2 * 7 * 8


BROKEN_EDITS = {
    "unknown role": (
        "p, desktop-flows-machine-owner, machine, register",
        "p, desktop-flows-machine-ownr, machine, register",
        "unknown role or level 'desktop-flows-machine-ownr'",
    ),
    "unknown action": (
        "p, owner, machine, edit",
        "p, owner, machine, edt",
        "unknown action 'edt'",
    ),
    "wrong shape": ("p, user, machine, run", "p, user, machine", "expected 'p, <role>"),
    "action on the wrong object": (
        "p, environment-maker, machine_group, create",
        "p, environment-maker, machine, create",
        "'create' applies to machine_group",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_EDITS))
def test_policy_check_names_the_line_of_a_broken_folder(tmp_path: Path, case: str) -> None:
    original, broken, message = BROKEN_EDITS[case]
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    text = (folder / "policy.csv").read_text()
    line = text.splitlines().index(original) + 1
    (folder / "policy.csv").write_text(text.replace(original, broken))
    result = run_cli(tmp_path, "policy", "check", str(folder))
    assert result.returncode == 1
    assert f"policy.csv line {line}:" in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("content", ["", "# only a comment\n", "p, owner, machine, run\n"])
def test_policy_check_refuses_a_folder_that_leaves_roles_without_lines(
    tmp_path: Path, content: str
) -> None:
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    (folder / "policy.csv").write_text(content)
    result = run_cli(tmp_path, "policy", "check", str(folder))
    assert result.returncode == 1
    assert "no line left for" in result.stderr


# One case of each kind of failure: the reading, the model's layout, the engine's load,
# its evaluation, the lines; every case is a unit test in tests/unit/test_policy_files.py.
CHECKED_CASES = [
    "no matchers",
    "not a model",
    "unknown effect",
    "matcher naming an unknown function",
    "effect allowing what no line says",
    "model not UTF-8",
    "policy line that does not parse",
]


@pytest.mark.parametrize("case", CHECKED_CASES)
def test_policy_check_says_what_is_wrong_without_a_traceback(tmp_path: Path, case: str) -> None:
    folder = tmp_path / "policies"
    BROKEN[case].write(folder)
    result = run_cli(tmp_path, "policy", "check", str(folder))
    assert_refused_in_words(result, BROKEN[case].says)


def test_policy_check_names_a_missing_file_or_folder(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "policy", "check", str(tmp_path / "nowhere"))
    assert_refused_in_words(result, "nowhere: no such folder")
    folder = tmp_path / "policies"
    shutil.copytree(POLICIES, folder)
    (folder / "model.conf").unlink()
    result = run_cli(tmp_path, "policy", "check", str(folder))
    assert_refused_in_words(result, "model.conf: file is missing")


def test_schema_command_prints_the_committed_schema(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "schema")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (REPO / "schema.graphql").read_text()
