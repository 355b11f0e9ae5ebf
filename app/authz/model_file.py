"""Checks a model file must pass before Casbin builds an enforcer from it.

Casbin loads a model without matchers or without a request definition and fails only
when asked for a decision, with words such as "'NoneType' object is not subscriptable";
it silently ignores a misspelt section. These checks name the missing or wrong part in
plain words. Whatever they let through still fails at load time, not later: every
decision the service needs is evaluated then (see `enforcer`).
"""

from __future__ import annotations

import casbin
from casbin.constant import constants
from casbin.effect import get_effector

from app.authz.validation import PolicyError

# The sections the service needs: (section, key, an example line, as the shipped model has).
REQUIRED = (
    ("request_definition", "r", "r = sub, obj, act"),
    ("policy_definition", "p", "p = sub, obj, act"),
    ("policy_effect", "e", "e = some(where (p.eft == allow))"),
    ("matchers", "m", "m = r.sub == p.sub && r.obj == p.obj && r.act == p.act"),
)
KNOWN_SECTIONS = {section for section, _, _ in REQUIRED} | {"role_definition"}
# A request is (role or level, object, action), and so is every policy line.
FIELDS = 3
# The effects the engine knows, written as in a model file.
EFFECTS = tuple(
    effect.replace("p_eft", "p.eft")
    for effect in (
        constants.ALLOW_OVERRIDE_EFFECT,
        constants.DENY_OVERRIDE_EFFECT,
        constants.ALLOW_AND_DENY_EFFECT,
        constants.PRIORITY_EFFECT,
        constants.SUBJECT_PRIORITY_EFFECT,
    )
)


def _layout_problems(name: str, text: str) -> tuple[set[str], list[str]]:
    """The sections the file names, and its entries that are not `key = value`.

    Mirrors Casbin's reader: `#` and `;` start comments, a trailing backslash continues
    an entry on the next line.
    """
    sections: set[str] = set()
    problems: list[str] = []
    entry: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not entry and (not line or line[0] in "#;"):
            continue
        if not entry and line.startswith("[") and line.endswith("]"):
            sections.add(line[1:-1])
            continue
        start = start if entry else number
        entry.append(line.removesuffix("\\"))
        if line.endswith("\\"):
            continue
        if "=" not in " ".join(entry):
            problems.append(
                f"{name} line {start}: expected '[section]' or '<key> = <value>', got {line!r}"
            )
        entry = []
    unknown = sorted(sections - KNOWN_SECTIONS)
    if unknown:
        problems.append(
            f"{name}: unknown section(s) {', '.join(f'[{s}]' for s in unknown)} (misspelt?);"
            f" the engine reads only {', '.join(f'[{s}]' for s in sorted(KNOWN_SECTIONS))}"
        )
    return sections, problems


def _definition_problems(name: str, model: casbin.Model, sections: set[str]) -> list[str]:
    if not sections:  # say it once, not once per section
        needed = ", ".join(f"[{section}]" for section, _, _ in REQUIRED)
        return [f"{name}: no section at all (an empty file?); it needs {needed}"]
    problems = []
    for section, key, example in REQUIRED:
        assertion = (model[key] or {}).get(key)
        if assertion is None:
            missing = f"no [{section}] section"
            if section in sections:
                missing = f"[{section}] has no '{key} = ...' line"
            problems.append(f"{name}: {missing}; it needs one such as '{example}'")
        elif key in "rp" and len(assertion.tokens) != FIELDS:
            problems.append(
                f"{name}: '{key} = {assertion.value}' has {len(assertion.tokens)} field(s);"
                f" the service's requests and policy lines have three, as in '{example}'"
            )
        elif key == "e" and not _known_effect(assertion.value):
            problems.append(
                f"{name}: [policy_effect] is not an effect the engine knows;"
                f" use one of: {'; '.join(EFFECTS)}"
            )
    return problems


def _known_effect(expression: str) -> bool:
    try:
        get_effector(expression)
    except RuntimeError:
        return False
    return True


def check_model(name: str, text: str) -> casbin.Model:
    """Parse a model file's text, refusing one that lacks a part the service needs."""
    sections, problems = _layout_problems(name, text)
    model = casbin.Model()
    if not problems:
        try:
            model.load_model_from_text(text)
        except Exception as error:  # Casbin raises bare exceptions for syntax errors
            problems.append(f"{name}: cannot be parsed: {error}")
    if not problems:
        problems = _definition_problems(name, model, sections)
    if problems:
        raise PolicyError("; ".join(problems))
    return model
