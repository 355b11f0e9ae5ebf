"""The vendored browser libraries are exactly the files of the versions the lock pins.

`frontend/refresh_vendor.py` copies them from the npm registry (through `npm ci`, which
checks every tarball against the lock's integrity hash) and records each copied file in
`frontend/vendored.json`. This test holds the three together: a file edited by hand, a
file added to a vendor folder without the script, or a pin changed in `package.json` or
the lock without refreshing the files fails here.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import REPO

FRONTEND = REPO / "frontend"
VENDOR_FOLDERS = (REPO / "app/console/vendor", REPO / "tests/browser/vendor")
EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _manifest() -> list[dict[str, str]]:
    files: list[dict[str, str]] = _json(FRONTEND / "vendored.json")["files"]
    return files


def _pins() -> dict[str, str]:
    package = _json(FRONTEND / "package.json")
    pins: dict[str, str] = {**package["dependencies"], **package["devDependencies"]}
    return pins


def test_package_json_pins_exact_versions_that_the_lock_holds() -> None:
    lock = _json(FRONTEND / "package-lock.json")["packages"]
    for name, version in _pins().items():
        assert EXACT_VERSION.match(version), f"{name} is not pinned to one version: {version}"
        assert lock[f"node_modules/{name}"]["version"] == version, name


def test_every_vendored_file_is_the_pinned_packages_file() -> None:
    lock = _json(FRONTEND / "package-lock.json")["packages"]
    pins = _pins()
    for entry in _manifest():
        locked = lock[f"node_modules/{entry['package']}"]
        assert entry["version"] == pins[entry["package"]] == locked["version"], entry["path"]
        assert entry["integrity"] == locked["integrity"], entry["path"]
        data = (REPO / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], (
            f"{entry['path']} differs from {entry['package']}@{entry['version']}"
            f"/{entry['source']}: run frontend/refresh_vendor.py"
        )


def test_vendor_folders_hold_only_recorded_files_and_every_pin_is_used() -> None:
    recorded = {entry["path"] for entry in _manifest()}
    present = {
        path.relative_to(REPO).as_posix()
        for folder in VENDOR_FOLDERS
        for path in folder.rglob("*")
        if path.is_file()
    }
    assert present == recorded
    assert {entry["package"] for entry in _manifest()} == set(_pins())
