"""The one owner of the Casbin enforcer.

Casbin is the source of truth, but asking it per field per item would cost a call each
time. So every loaded policy is compiled once into a `DecisionTable`: the enforcer is
asked about every (subject, object, action) the service knows, and the answers are kept
in a frozen set that requests read without locks. Asking every question at load time is
also the model's real test: whatever the engine cannot evaluate fails there, as a
`PolicyError`, never later in a request or in the watcher.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from itertools import product
from pathlib import Path

import casbin

from app.authz.files import MODEL_FILE, POLICY_FILE, PolicyFiles, decode_text, read_policy_files
from app.authz.model_file import check_model
from app.authz.validation import POLICY_SUBJECTS, PolicyError, parse_policy_lines
from app.domain.enums import POLICY_ACTIONS, RecordKind

log = logging.getLogger(__name__)

Triple = tuple[str, str, str]  # (subject, object, action), as a policy line has them

# Every question the decision table answers.
QUESTIONS: tuple[Triple, ...] = tuple(
    (subject, obj.value, action.value)
    for subject, obj, action in product(POLICY_SUBJECTS, RecordKind, POLICY_ACTIONS)
)


@dataclass(frozen=True)
class DecisionTable:
    """The allowed (subject, object, action) triples of one loaded policy."""

    allowed: frozenset[Triple]
    checksum: str
    loaded_at: datetime

    def permits(self, subject: str, obj: RecordKind, action: str) -> bool:
        """Whether the policy gives `subject` the `action` on objects of kind `obj`."""
        return (subject, obj.value, action) in self.allowed


def policy_checksum(folder: Path) -> str:
    """SHA-256 over the model and policy files, as loaded."""
    return read_policy_files(folder).checksum


def _parse(files: PolicyFiles) -> tuple[casbin.Model, frozenset[Triple]]:
    """The model and the policy lines, both files checked so one run names both's problems."""
    problems: list[str] = []
    model, written = None, frozenset[Triple]()
    try:
        model = check_model(MODEL_FILE, decode_text(MODEL_FILE, files.model))
    except PolicyError as error:
        problems.append(str(error))
    try:
        lines = parse_policy_lines(POLICY_FILE, decode_text(POLICY_FILE, files.policy))
        written = frozenset((line.subject, line.obj, line.action) for line in lines)
    except PolicyError as error:
        problems.append(str(error))
    if problems:
        raise PolicyError("; ".join(problems))
    return model, written


def _evaluate(model: casbin.Model, written: frozenset[Triple]) -> frozenset[Triple]:
    """Ask the engine every question, so that a model it cannot evaluate fails here."""
    try:
        enforcer = casbin.Enforcer(model)
        enforcer.add_policies(sorted(written))
    except Exception as error:  # Casbin raises bare exceptions for what it cannot load
        raise PolicyError(f"{MODEL_FILE}: the engine cannot load it: {_named(error)}") from error
    allowed = set()
    for subject, obj, action in QUESTIONS:
        try:
            if enforcer.enforce(subject, obj, action):
                allowed.add((subject, obj, action))
        except Exception as error:  # a matcher naming an unknown field or function, say
            raise PolicyError(
                f"{MODEL_FILE}: the engine cannot evaluate it (asked whether {subject} may"
                f" {action} a {obj}): {_named(error)}"
            ) from error
    return frozenset(allowed)


def _named(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _check_one_line_per_privilege(allowed: frozenset[Triple], written: frozenset[Triple]) -> None:
    """The spec's promise: a privilege is a line, and deleting the line takes it away.

    A model whose effect or matcher allows what no line says (or refuses what a line
    says) would break it silently, so it is refused like any other bad edit.
    """
    problems = []
    if unwritten := sorted(allowed - written):
        problems.append(
            f"allows {len(unwritten)} privilege(s) no line grants, such as"
            f" 'p, {', '.join(unwritten[0])}'"
        )
    if refused := sorted(written - allowed):
        problems.append(
            f"refuses {len(refused)} privilege(s) that lines grant, such as"
            f" 'p, {', '.join(refused[0])}'"
        )
    if problems:
        raise PolicyError(
            f"{MODEL_FILE} decides otherwise than the lines of {POLICY_FILE}: it"
            f" {' and '.join(problems)}; each privilege must be exactly one line"
        )


def compile_files(files: PolicyFiles, loaded_at: datetime) -> DecisionTable:
    """Check a policy folder's files and compile their decision table, or raise PolicyError."""
    model, written = _parse(files)
    allowed = _evaluate(model, written)
    _check_one_line_per_privilege(allowed, written)
    return DecisionTable(allowed=allowed, checksum=files.checksum, loaded_at=loaded_at)


def compile_policy(folder: Path, loaded_at: datetime) -> DecisionTable:
    """Load a policy folder into a scratch enforcer and compile its decision table."""
    return compile_files(read_policy_files(folder), loaded_at)


def describe_failure(folder: Path, error: Exception) -> str:
    """What went wrong checking `folder`, in words: a PolicyError's own, else its type."""
    if isinstance(error, PolicyError):
        return str(error)
    return f"{folder}: cannot be checked: {_named(error)}"


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
        # What the last reload judged: the files' checksum, or why they could not be read.
        # The watcher also reloads on a timer; the same files are judged (and reported) once.
        self._examined = table.checksum

    @classmethod
    def load(cls, folder: Path, now: datetime) -> PolicyStore:
        """Load the folder; a broken policy stops the start-up with its reason."""
        return cls(folder, compile_policy(folder, now))

    @classmethod
    def empty(cls, folder: Path, now: datetime) -> PolicyStore:
        """A store that permits nothing, for callers no policy line governs: the command
        line administers users and roles, which the policy does not decide, and must run
        wherever the server's database is, policy folder or not."""
        return cls(folder, DecisionTable(allowed=frozenset(), checksum="", loaded_at=now))

    def reload(self, now: datetime) -> PolicyOutcome | None:
        """Apply the folder's current files if they pass every check; else keep the old.

        None when the files are the ones the last reload judged: there is nothing new to
        say. The new table is compiled in a scratch enforcer and swapped in with one
        assignment, so a decision sees either the old policy or the new one. No exception
        escapes: whatever fails, a bug included, rejects the edit and is reported.
        """
        checksum: str | None = None
        try:
            files = read_policy_files(self.folder)
            checksum = files.checksum
            if checksum == self._examined:
                return None
            table = compile_files(files, now)
        except Exception as error:  # the watcher calls this and must outlive any failure
            if not isinstance(error, PolicyError):
                log.exception("checking the policy folder %s failed", self.folder)
            return self._reject(describe_failure(self.folder, error), checksum)
        self._examined = checksum
        self.last_error = None
        changed = table.checksum != self.table.checksum
        if changed:
            self.table = table
        return PolicyOutcome(applied=changed, checksum=table.checksum, error=None)

    def _reject(self, error: str, checksum: str | None) -> PolicyOutcome | None:
        examined = checksum or error  # files that could not be read: the reason stands in
        if examined == self._examined:
            return None
        self._examined, self.last_error = examined, error
        return PolicyOutcome(applied=False, checksum=None, error=error)
