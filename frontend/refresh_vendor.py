"""Refresh the vendored browser libraries from the npm registry, exactly as pinned.

    python3 frontend/refresh_vendor.py

`npm ci` installs what `package-lock.json` pins into `frontend/node_modules` (npm checks
each tarball against the lock's integrity hash), then the files the console serves are
copied verbatim (nothing is built or bundled) to `app/console/vendor/`, axe-core (used by
the browser tests only) to `tests/browser/vendor/`, and `vendored.json` records, for
every copied file, its package, version, the lock's integrity and the file's SHA-256.
`tests/unit/test_vendored_assets.py` checks the files and the lock against that record.

To change a version: edit `package.json`, run `npm install --ignore-scripts` in this
folder (it rewrites the lock), then this script, and commit all three with the files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MANIFEST = HERE / "vendored.json"
CONSOLE_VENDOR = "app/console/vendor"
TEST_VENDOR = "tests/browser/vendor"

# (package, file in the package, destination under the repository). Globs are allowed in
# the source: graphql-ws's client imports a chunk whose name carries a content hash.
FILES: list[tuple[str, str, str]] = [
    ("preact", "dist/preact.mjs", f"{CONSOLE_VENDOR}/preact/preact.js"),
    ("preact", "hooks/dist/hooks.mjs", f"{CONSOLE_VENDOR}/preact/hooks.js"),
    ("preact", "LICENSE", f"{CONSOLE_VENDOR}/preact/LICENSE"),
    ("htm", "dist/htm.mjs", f"{CONSOLE_VENDOR}/htm/htm.js"),
    ("htm", "LICENSE", f"{CONSOLE_VENDOR}/htm/LICENSE"),
    ("graphql-ws", "dist/client.js", f"{CONSOLE_VENDOR}/graphql-ws/client.js"),
    ("graphql-ws", "dist/common-*.js", f"{CONSOLE_VENDOR}/graphql-ws/"),
    ("graphql-ws", "LICENSE.md", f"{CONSOLE_VENDOR}/graphql-ws/LICENSE.md"),
    ("react", "umd/react.production.min.js", f"{CONSOLE_VENDOR}/react/react.production.min.js"),
    ("react", "LICENSE", f"{CONSOLE_VENDOR}/react/LICENSE"),
    (
        "react-dom",
        "umd/react-dom.production.min.js",
        f"{CONSOLE_VENDOR}/react-dom/react-dom.production.min.js",
    ),
    ("react-dom", "LICENSE", f"{CONSOLE_VENDOR}/react-dom/LICENSE"),
    # GraphiQL's own UMD bundle (React and ReactDOM as globals); it includes graphql-ws
    # for the subscriptions its fetcher sends.
    ("graphiql", "graphiql.min.js", f"{CONSOLE_VENDOR}/graphiql/graphiql.min.js"),
    ("graphiql", "graphiql.min.css", f"{CONSOLE_VENDOR}/graphiql/graphiql.min.css"),
    ("graphiql", "LICENSE", f"{CONSOLE_VENDOR}/graphiql/LICENSE"),
    ("axe-core", "axe.min.js", f"{TEST_VENDOR}/axe-core/axe.min.js"),
    ("axe-core", "LICENSE", f"{TEST_VENDOR}/axe-core/LICENSE"),
]


def sha256(path: Path) -> str:
    """The file's SHA-256, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    """Install the lock's packages, copy the files, write the manifest."""
    subprocess.run(
        ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=HERE, check=True
    )
    lock = json.loads((HERE / "package-lock.json").read_text())["packages"]
    for folder in (CONSOLE_VENDOR, TEST_VENDOR):
        shutil.rmtree(REPO / folder, ignore_errors=True)
    entries = []
    for package, pattern, destination in FILES:
        pinned = lock[f"node_modules/{package}"]
        root = HERE / "node_modules" / package
        sources = sorted(root.glob(pattern))
        if not sources:
            print(f"error: {package} has no {pattern}", file=sys.stderr)
            return 1
        for source in sources:
            target = REPO / destination
            if destination.endswith("/"):
                target = target / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            entries.append(
                {
                    "path": target.relative_to(REPO).as_posix(),
                    "package": package,
                    "version": pinned["version"],
                    "integrity": pinned["integrity"],
                    "source": source.relative_to(root).as_posix(),
                    "sha256": sha256(target),
                }
            )
    manifest = {
        "comment": "Written by frontend/refresh_vendor.py; checked by "
        "tests/unit/test_vendored_assets.py. Do not edit by hand.",
        "files": entries,
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{len(entries)} files vendored; manifest {MANIFEST.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
