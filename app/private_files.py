"""The SQLite file and the generated key file: readable by their owner only (0600).

They hold secrets (password hashes, encrypted connection passwords, the signing key)
and run data. A file is created 0600 whatever the umask; one found readable by others
(made by an older version, copied in by hand) is tightened at start, with a warning,
rather than refused: the service stays up, and the log says what was changed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

PRIVATE_MODE = 0o600
# Beside a database, SQLite keeps its write-ahead log, its shared-memory index and, before
# WAL mode is on, a rollback journal; each holds pages of the database.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
log = logging.getLogger("app.files")


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """A file descriptor on `path`, opened with `flags`, whose file is exactly 0600."""
    fd = os.open(path, flags, PRIVATE_MODE)
    # The umask may have taken bits off a new file, and an existing one keeps its mode.
    os.fchmod(fd, PRIVATE_MODE)
    return fd


def tighten(path: Path) -> None:
    """Take the group's and others' permissions off an existing file, saying so in the log."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if not mode & ~PRIVATE_MODE:
        return
    private = mode & PRIVATE_MODE
    try:
        path.chmod(private)
    except OSError as error:
        log.warning("%s has mode %o and could not be made private: %s", path, mode, error)
        return
    log.warning("%s had mode %o: now readable by its owner only (%o)", path, mode, private)


def keep_sqlite_private(database: Path) -> None:
    """Create the database file 0600 if it is missing, and tighten it and its side files.

    SQLite gives the side files it creates the database file's own mode, so a database
    created here keeps them private. Where the folder is missing nothing is created:
    SQLite's own error then says so, as before.
    """
    if database.parent.is_dir() and not database.exists():
        # An empty file is an empty database to SQLite; another server starting on the
        # same file may have made it meanwhile.
        with contextlib.suppress(FileExistsError):
            os.close(open_private(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    for path in (database, *(database.with_name(database.name + s) for s in SQLITE_SIDE_FILES)):
        tighten(path)
