"""Broken policy folders and the words their rejection must hold.

Written once, used by the unit tests (every case), the command-line tests and the
live-server tests (some cases each): a case is one file of the shipped folder replaced.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from app.authz.files import MODEL_FILE, POLICY_FILE, PolicyFiles
from tests.conftest import POLICIES

MODEL = (POLICIES / MODEL_FILE).read_text()
POLICY = (POLICIES / POLICY_FILE).read_text()
MATCHER = "r.sub == p.sub && r.obj == p.obj && r.act == p.act"


@dataclass(frozen=True)
class Broken:
    """The shipped folder with one file's contents replaced, and what the error must say."""

    file: str
    contents: bytes
    says: str

    def write(self, folder: Path) -> None:
        """Make `folder` this case (a copy of the shipped folder, then the broken file)."""
        if not folder.exists():
            shutil.copytree(POLICIES, folder)
        (folder / self.file).write_bytes(self.contents)

    def files(self) -> PolicyFiles:
        """The case's two files, in memory."""
        model, policy = MODEL.encode(), POLICY.encode()
        if self.file == MODEL_FILE:
            return PolicyFiles(model=self.contents, policy=policy)
        return PolicyFiles(model=model, policy=self.contents)


def _model(text: str, says: str) -> Broken:
    return Broken(MODEL_FILE, text.encode(), says)


def _matcher(matcher: str, says: str) -> Broken:
    return _model(MODEL.replace(MATCHER, matcher), says)


BROKEN: dict[str, Broken] = {
    "no matchers": _model(MODEL.split("[matchers]")[0], "no [matchers] section"),
    "matchers without m": _model(
        MODEL.replace(f"m = {MATCHER}", ""), "[matchers] has no 'm = ...' line"
    ),
    "misspelt section": _model(
        MODEL.replace("[matchers]", "[matcher]"), "unknown section(s) [matcher]"
    ),
    "no request definition": _model(
        MODEL.replace("[request_definition]\nr = sub, obj, act\n", ""),
        "no [request_definition] section",
    ),
    "no policy definition": _model(
        MODEL.replace("[policy_definition]\np = sub, obj, act\n", ""),
        "no [policy_definition] section",
    ),
    "no policy effect": _model(
        MODEL.replace("[policy_effect]\ne = some(where (p.eft == allow))\n", ""),
        "no [policy_effect] section",
    ),
    "unknown effect": _model(
        MODEL.replace("e = some(", "e = most("), "[policy_effect] is not an effect the engine"
    ),
    "request of two fields": _model(
        MODEL.replace("r = sub, obj, act", "r = sub, obj"), "'r = sub, obj' has 2 field(s)"
    ),
    "policy line of four fields": _model(
        MODEL.replace("p = sub, obj, act", "p = sub, obj, act, eft"), "has 4 field(s)"
    ),
    "matcher naming an unknown field": _matcher(
        MATCHER.replace("p.act", "p.action"), "'p_action' is not defined"
    ),
    "matcher naming an unknown function": _matcher(
        "frob(r.act, p.act)", "Function 'frob' not defined"
    ),
    "matcher naming an undefined role function": _matcher(
        f"{MATCHER} && g(r.sub, p.sub)", "Function 'g' not defined"
    ),
    "matcher that does not parse": _matcher("r.act == == p.act", "SyntaxError"),
    "matcher that is not a condition": _matcher("r.sub", "matcher result should be bool"),
    "matcher ignoring the action": _matcher(
        "r.sub == p.sub && r.obj == p.obj", "allows 52 privilege(s) no line grants"
    ),
    "matcher refusing what a line grants": _matcher(
        f"{MATCHER} && r.act != 'run'", "refuses 14 privilege(s) that lines grant"
    ),
    "effect allowing what no line says": _model(
        MODEL.replace("some(where (p.eft == allow))", "!some(where (p.eft == deny))"),
        "decides otherwise than the lines of policy.csv",
    ),
    "empty model": _model("", "no section at all"),
    "not a model": _model(
        "this is not a casbin model\n", "model.conf line 1: expected '[section]'"
    ),
    "model not UTF-8": Broken(
        MODEL_FILE, MODEL.replace("service", "servïce").encode("latin-1"), "not UTF-8 text"
    ),
    "binary model": Broken(MODEL_FILE, b"\x00\x01\x02\x03", "control character '\\x00'"),
    "policy not UTF-8": Broken(
        POLICY_FILE, POLICY.replace("Who may", "Whö may").encode("latin-1"), "not UTF-8 text"
    ),
    "empty policy": Broken(POLICY_FILE, b"", "no line left for environment-maker"),
    "policy line that does not parse": Broken(
        POLICY_FILE,
        POLICY.replace("p, user, machine, run", "p, user, machine").encode(),
        "expected 'p, <role>, <object>, <action>'",
    ),
}
