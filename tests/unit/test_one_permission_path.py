"""Records reach the API only through the permission path: `Seen` values, which only
the rules (app/domain/access.py), their batched decisions (app/domain/sight.py) and
their SQL mirror (app/domain/visibility.py) make."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from app.domain.access import Seen
from app.graphql.schema import schema_sdl
from app.graphql.types.group import MachineGroupType
from app.graphql.types.machine import MachineType
from app.graphql.types.run import ConnectionType, RunType

APP = Path(__file__).resolve().parents[2] / "app"
DECIDERS = {"domain/access.py", "domain/sight.py", "domain/visibility.py"}


def _makers_of_seen() -> set[str]:
    found = set()
    for path in APP.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else None
                if isinstance(node.func, ast.Attribute):
                    name = node.func.attr
                if name == "Seen":
                    found.add(str(path.relative_to(APP)))
    return found


def test_only_the_permission_path_decides_what_is_seen() -> None:
    assert _makers_of_seen() == DECIDERS


def test_every_record_type_is_built_from_a_seen_record() -> None:
    for record_type in (MachineGroupType, MachineType, RunType, ConnectionType):
        first = next(iter(inspect.signature(record_type.of).parameters.values()))
        assert str(first.annotation).startswith("Seen["), (record_type, first)
        assert not re.search(r"^\s*seen\s*[:(]", schema_sdl(), re.MULTILINE)
    assert Seen.__dataclass_params__.frozen  # type: ignore[attr-defined]
