"""Checks a policy file must pass before it is loaded: every line, by number.

Casbin accepts any string as a role or action, so a typo such as
`desktop-flows-machine-ownr` would be a silently dead line. Here every line must name a
role or level, an object and an action the service knows; every role and level keeps at
least one line unless the file says `# no-privileges: <role>` for it; and an empty or
half-written file (an editor saving in two steps) fails these checks, so it is never
applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.domain.enums import POLICY_ACTIONS, AccessLevel, RecordKind, SecurityRole

# The subjects a policy line may name: every role but SYSTEM_ADMINISTRATOR, every level.
POLICY_SUBJECTS = tuple(
    [role.policy_name for role in SecurityRole if role is not SecurityRole.SYSTEM_ADMINISTRATOR]
    + [level.policy_name for level in AccessLevel]
)
OBJECTS = tuple(kind.value for kind in RecordKind)
ACTIONS = tuple(action.value for action in POLICY_ACTIONS)
# Actions that make sense on one kind of object only.
ONLY_ON = {"register": "machine", "create": "machine_group"}
NO_PRIVILEGES = re.compile(r"^#\s*no-privileges:\s*(?P<subject>[\w-]+)\s*$")


class PolicyError(ValueError):
    """A policy folder the service refuses to load."""


@dataclass(frozen=True)
class PolicyLine:
    """One `p, subject, object, action` line and where it stands."""

    number: int
    subject: str
    obj: str
    action: str


def _problem(name: str, number: int, message: str) -> str:
    return f"{name} line {number}: {message}"


def parse_policy_lines(name: str, text: str) -> list[PolicyLine]:
    """Parse and check every line of the policy file `name`, reporting all problems at once."""
    problems: list[str] = []
    lines: list[PolicyLine] = []
    declared_empty: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            marker = NO_PRIVILEGES.match(line)
            if marker:
                declared_empty.add(marker["subject"])
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 4 or fields[0] != "p":
            problems.append(
                _problem(name, number, f"expected 'p, <role>, <object>, <action>', got {line!r}")
            )
            continue
        _, subject, obj, action = fields
        if subject not in POLICY_SUBJECTS:
            problems.append(
                _problem(
                    name,
                    number,
                    f"unknown role or level {subject!r}; known: {', '.join(POLICY_SUBJECTS)}",
                )
            )
        if obj not in OBJECTS:
            problems.append(
                _problem(name, number, f"unknown object {obj!r}; known: {', '.join(OBJECTS)}")
            )
        if action not in ACTIONS:
            problems.append(
                _problem(name, number, f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
            )
        if action in ONLY_ON and obj in OBJECTS and obj != ONLY_ON[action]:
            problems.append(
                _problem(name, number, f"{action!r} applies to {ONLY_ON[action]}, not {obj}")
            )
        lines.append(PolicyLine(number, subject, obj, action))
    unknown_declared = declared_empty - set(POLICY_SUBJECTS)
    if unknown_declared:
        problems.append(f"{name}: no-privileges names unknown role(s) {sorted(unknown_declared)}")
    having = {line.subject for line in lines}
    left_without = [s for s in POLICY_SUBJECTS if s not in having and s not in declared_empty]
    if left_without and not problems:
        problems.append(
            f"{name}: no line left for {', '.join(left_without)} (an empty or half-written"
            " file?); to take every privilege from a role on purpose, add"
            " '# no-privileges: <role>'"
        )
    if problems:
        raise PolicyError("; ".join(problems))
    return lines
