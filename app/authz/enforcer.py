"""The one owner of the Casbin enforcer.

Casbin is the source of truth, but asking it per field per item would cost a call each
time. So every loaded policy is compiled once into a `DecisionTable`: the enforcer is
asked about every (subject, object, action) the service knows, and the answers are kept
in a frozen set that requests read without locks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import casbin

from app.authz.validation import POLICY_SUBJECTS, PolicyError, read_policy_lines
from app.domain.enums import POLICY_ACTIONS, RecordKind

MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"


@dataclass(frozen=True)
class DecisionTable:
    """The allowed (subject, object, action) triples of one loaded policy."""

    allowed: frozenset[tuple[str, str, str]]
    checksum: str
    loaded_at: datetime

    def permits(self, subject: str, obj: RecordKind, action: str) -> bool:
        """Whether the policy gives `subject` the `action` on objects of kind `obj`."""
        return (subject, obj.value, action) in self.allowed


def policy_checksum(folder: Path) -> str:
    """SHA-256 over the model and policy files, as loaded."""
    digest = hashlib.sha256()
    for name in (MODEL_FILE, POLICY_FILE):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def compile_policy(folder: Path, loaded_at: datetime) -> DecisionTable:
    """Load a policy folder into a scratch enforcer and compile its decision table."""
    model, policy = folder / MODEL_FILE, folder / POLICY_FILE
    for path in (model, policy):
        if not path.is_file():
            raise PolicyError(f"{path}: file is missing")
    read_policy_lines(policy)
    try:
        enforcer = casbin.Enforcer(str(model), str(policy))
    except Exception as error:  # Casbin raises bare exceptions for syntax errors
        raise PolicyError(f"{folder}: cannot be loaded: {error}") from error
    allowed = frozenset(
        (subject, obj.value, action.value)
        for subject in POLICY_SUBJECTS
        for obj in RecordKind
        for action in POLICY_ACTIONS
        if enforcer.enforce(subject, obj.value, action.value)
    )
    return DecisionTable(allowed=allowed, checksum=policy_checksum(folder), loaded_at=loaded_at)


@dataclass(frozen=True)
class PolicyOutcome:
    """What a reload did: applied a new policy, kept the same one, or rejected an edit."""

    applied: bool
    checksum: str | None
    error: str | None


class PolicyStore:
    """Holds the decision table in force; a reload swaps it in one assignment."""

    def __init__(self, folder: Path, table: DecisionTable) -> None:
        self.folder = folder
        self.table = table
        self.last_error: str | None = None

    @classmethod
    def load(cls, folder: Path, now: datetime) -> PolicyStore:
        """Load the folder; a broken policy stops the start-up with its reason."""
        return cls(folder, compile_policy(folder, now))

    def reload(self, now: datetime) -> PolicyOutcome:
        """Apply the folder's current files if they pass every check; else keep the old.

        The new table is compiled in a scratch enforcer and swapped in with one
        assignment, so a decision sees either the old policy or the new one.
        """
        try:
            table = compile_policy(self.folder, now)
        except PolicyError as error:
            self.last_error = str(error)
            return PolicyOutcome(applied=False, checksum=None, error=self.last_error)
        changed = table.checksum != self.table.checksum
        if changed:
            self.table = table
        self.last_error = None
        return PolicyOutcome(applied=changed, checksum=table.checksum, error=None)
