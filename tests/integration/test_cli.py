"""The `machine-groups` command, run as a real process against a real SQLite file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from tests.conftest import POLICIES, REPO
from tests.policy_cases import BROKEN

KEY = "cli-test-secret-key-0123456789abcdef0123456789"


def run_cli(folder: Path, *args: str, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    """Run the command in `folder` with the service's settings in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MG_")}
    env["PYTHONPATH"] = str(REPO)
    env["MG_POLICY_DIR"] = str(POLICIES)
    if key is not None:
        env["MG_SECRET_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_users_create_then_token_names_that_user(tmp_path: Path) -> None:
    created = run_cli(
        tmp_path, "users", "create", "dana", "--premium", "--role", "environment-maker"
    )
    assert created.returncode == 0, created.stderr
    assert "created user dana" in created.stdout
    assert (tmp_path / "machine-groups.db").exists()

    minted = run_cli(tmp_path, "token", "dana")
    assert minted.returncode == 0, minted.stderr
    claims = jwt.decode(minted.stdout.strip(), KEY, algorithms=["HS256"])
    assert claims["name"] == "dana"


def test_a_fresh_database_has_an_admin_to_mint_a_token_for(tmp_path: Path) -> None:
    minted = run_cli(tmp_path, "token", "admin", key=None)
    assert minted.returncode == 0, minted.stderr
    # Without MG_SECRET_KEY a key is generated once, beside the database.
    key = (tmp_path / "machine-groups.db.secret").read_text().strip()
    assert jwt.decode(minted.stdout.strip(), key, algorithms=["HS256"])["name"] == "admin"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("users", "create", "eve", "--role", "desktop-flows-machine-ownr"), "unknown role"),
        (("token", "nobody"), "no user named 'nobody'"),
        (("users", "create", "  "), "VALIDATION"),
    ],
)
def test_bad_input_exits_non_zero_with_a_clear_message(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run_cli(tmp_path, *args)
    assert result.returncode == 1
    assert message in result.stderr


def test_a_duplicate_user_is_refused(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "users", "create", "dana").returncode == 0
    again = run_cli(tmp_path, "users", "create", "DANA")
    assert again.returncode == 1
    assert "CONFLICT" in again.stderr


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


def assert_refused_in_words(result: subprocess.CompletedProcess[str], says: str) -> None:
    """Exit 1 with one line on stderr that says `says`, and no traceback anywhere."""
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert says in line


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
