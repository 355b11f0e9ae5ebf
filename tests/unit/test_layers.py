"""Imports run one way: the rules (app/domain) know nothing of waiting, events' delivery
or the API, and app/queue works on a Hub (database, bus, clock), never the service state."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
FORBIDDEN = {
    "domain": ("app.queue", "app.graphql", "app.state", "app.main"),
    "queue": ("app.state", "app.graphql", "app.main"),
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    wrong = {
        f"{path.relative_to(APP)}: {module}"
        for path in (APP / package).rglob("*.py")
        for module in _imports(path)
        if module.startswith(FORBIDDEN[package])
    }
    assert not wrong, sorted(wrong)
