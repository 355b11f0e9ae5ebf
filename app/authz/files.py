"""Reading a policy folder: both files once, as bytes, then as text only if they are text.

Everything later (the checks, the engine, the checksum) works from these bytes, so a file
saved again halfway through a load cannot make the checksum describe other contents
than the ones checked.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from app.authz.validation import PolicyError

MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"
# A policy is a few hundred short lines; a larger file is a mistake (a log, an image),
# and the watcher reads it on the event loop, so it is refused before it is read whole.
MAX_BYTES = 1 << 20
# Line breaks and tabs are text; any other control character means a binary file.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class PolicyFiles:
    """The bytes of a policy folder's model and policy files, read once."""

    model: bytes
    policy: bytes

    @property
    def checksum(self) -> str:
        """SHA-256 over the model and policy files, as loaded."""
        return hashlib.sha256(self.model + self.policy).hexdigest()


def _read(path: Path) -> bytes:
    if not path.exists():
        raise PolicyError(f"{path}: file is missing")
    if not path.is_file():
        raise PolicyError(f"{path}: is not a file")
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as error:
        raise PolicyError(f"{path}: cannot be read: {error.strerror or error}") from error
    if len(data) > MAX_BYTES:
        raise PolicyError(f"{path}: larger than {MAX_BYTES} bytes, too large for a policy file")
    return data


def read_policy_files(folder: Path) -> PolicyFiles:
    """Read both files of a policy folder, refusing one that is missing or unreadable."""
    if not folder.is_dir():
        raise PolicyError(f"{folder}: no such folder")
    return PolicyFiles(model=_read(folder / MODEL_FILE), policy=_read(folder / POLICY_FILE))


def decode_text(name: str, data: bytes) -> str:
    """The file as text: UTF-8 (a leading byte-order mark is dropped), no control characters."""
    try:
        # utf-8-sig: editors on Windows may start the file with a BOM, which would
        # otherwise glue itself to the first line and turn a comment into a syntax error.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PolicyError(
            f"{name}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start});"
            " save it as UTF-8"
        ) from None
    found = CONTROL.search(text)
    if found:
        number = text.count("\n", 0, found.start()) + 1
        raise PolicyError(
            f"{name} line {number}: control character {found.group()!r}; is this a text file?"
        )
    return text
