"""The `machine-groups` command, run as a real process against a real SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from tests.conftest import POLICIES, REPO

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


def test_policy_check_prints_what_each_role_may_do(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "policy", "check", str(POLICIES))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "machine:register" in lines["environment-maker"]
    assert "machine:register" not in lines["desktop-flows-machine-user"]
    assert "machine_group:share" in lines["desktop-flows-machine-user-can-share"]


def test_policy_check_refuses_a_folder_that_does_not_load(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.conf").write_text("this is not a casbin model\n")
    (broken / "policy.csv").write_text("p, owner, machine, run\n")
    result = run_cli(tmp_path, "policy", "check", str(broken))
    assert result.returncode == 1
    assert "error:" in result.stderr


def test_schema_command_prints_the_committed_schema(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "schema")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (REPO / "schema.graphql").read_text()
