"""A policy folder is refused, with its reason in words, unless the engine can decide from it.

Each broken case (tests/policy_cases.py) is compiled in memory; the folder reading and
the store's reloads use files in a temporary folder.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.authz.enforcer import PolicyStore, compile_files, compile_policy
from app.authz.files import MAX_BYTES, MODEL_FILE, POLICY_FILE, PolicyFiles, read_policy_files
from app.authz.validation import PolicyError
from tests.conftest import POLICIES
from tests.policy_cases import BROKEN, MATCHER, MODEL, POLICY

NOW = datetime(2026, 11, 27, tzinfo=UTC)
SHIPPED = compile_policy(POLICIES, NOW)


def refusal(files: PolicyFiles) -> str:
    with pytest.raises(PolicyError) as error:
        compile_files(files, NOW)
    return str(error.value)


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_folder_is_refused_with_its_reason_on_one_line(case: str) -> None:
    message = refusal(BROKEN[case].files())
    assert BROKEN[case].says in message
    assert "\n" not in message


def test_a_model_without_matchers_is_refused_before_any_decision_is_asked() -> None:
    message = refusal(BROKEN["no matchers"].files())
    assert message.startswith("model.conf: no [matchers] section; it needs one such as 'm = ")


def test_both_files_problems_are_named_at_once() -> None:
    files = PolicyFiles(
        model=BROKEN["no matchers"].contents, policy=BROKEN["empty policy"].contents
    )
    message = refusal(files)
    assert "no [matchers] section" in message
    assert "no line left for" in message


@pytest.mark.parametrize(
    "model",
    [
        "\ufeff" + MODEL,  # a byte-order mark, as some Windows editors save
        MODEL.replace("\n", "\r\n"),
        MODEL.replace(
            f"m = {MATCHER}", "m = r.sub == p.sub \\\n  && r.obj == p.obj && r.act == p.act"
        ),
        MODEL.replace("r.act == p.act", "keyMatch(r.act, p.act)"),
    ],
    ids=["byte-order mark", "CRLF", "continued line", "same decisions, other matcher"],
)
def test_a_model_that_decides_as_the_lines_say_is_accepted(model: str) -> None:
    table = compile_files(PolicyFiles(model=model.encode(), policy=POLICY.encode()), NOW)
    assert table.allowed == SHIPPED.allowed


def test_the_table_holds_exactly_the_lines_of_the_policy_file() -> None:
    lines = {
        tuple(field.strip() for field in line.split(","))[1:]
        for line in POLICY.splitlines()
        if line.startswith("p,")
    }
    assert SHIPPED.allowed == lines


# --- reading the folder -----------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    return copy


def read_refusal(folder: Path) -> str:
    with pytest.raises(PolicyError) as error:
        read_policy_files(folder)
    return str(error.value)


def test_a_missing_folder_or_file_is_named(folder: Path) -> None:
    assert read_refusal(folder.parent / "nowhere") == f"{folder.parent / 'nowhere'}: no such folder"
    (folder / MODEL_FILE).unlink()
    assert read_refusal(folder) == f"{folder / MODEL_FILE}: file is missing"


def test_a_folder_in_place_of_a_file_is_refused(folder: Path) -> None:
    (folder / POLICY_FILE).unlink()
    (folder / POLICY_FILE).mkdir()
    assert read_refusal(folder) == f"{folder / POLICY_FILE}: is not a file"


def test_a_file_larger_than_any_policy_is_refused_unread(folder: Path) -> None:
    (folder / POLICY_FILE).write_bytes(b"#" * (MAX_BYTES + 1))
    assert "too large for a policy file" in read_refusal(folder)


# --- the store: what a reload reports ---------------------------------------


def test_a_reload_reports_each_new_state_of_the_files_once(folder: Path) -> None:
    store = PolicyStore.load(folder, NOW)
    assert store.reload(NOW) is None  # nothing changed

    BROKEN["no matchers"].write(folder)
    rejected = store.reload(NOW)
    assert rejected is not None and rejected.error and "no [matchers]" in rejected.error
    assert store.last_error == rejected.error
    assert store.table.allowed == SHIPPED.allowed  # the last good policy stays in force
    assert store.reload(NOW) is None  # the same bad files: said already

    (folder / MODEL_FILE).write_text(MODEL)
    restored = store.reload(NOW)
    assert restored is not None and not restored.applied and restored.error is None
    assert store.last_error is None

    (folder / POLICY_FILE).write_text(POLICY.replace("p, user, machine_group, run\n", ""))
    applied = store.reload(NOW)
    assert applied is not None and applied.applied
    assert ("user", "machine_group", "run") not in store.table.allowed


def test_a_folder_that_vanishes_is_reported_once_and_its_return_applies(folder: Path) -> None:
    store = PolicyStore.load(folder, NOW)
    shutil.rmtree(folder)
    gone = store.reload(NOW)
    assert gone is not None and gone.error == f"{folder}: no such folder"
    assert store.reload(NOW) is None

    shutil.copytree(POLICIES, folder)
    back = store.reload(NOW)
    assert back is not None and back.error is None and store.last_error is None
