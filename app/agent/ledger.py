"""The agent's folder for one machine key: its lock, and the flow it runs, on disk.

The lock keeps one agent per machine key on a host; the record of the running flow lets
the next agent stop what a killed one left before it claims anything, so that a machine
never runs two flows at once, nor one the service no longer counts as running.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from app.agent.client import AgentError
from app.agent.groups import boot_id, start_time

LOCK_FILE = "agent.lock"
FLOW_FILE = "flow.json"


class AnotherAgent(Exception):
    """Another agent holds the lock of this machine key on this host."""


def default_state_dir() -> Path:
    """Where agents keep their state: $XDG_STATE_HOME/machine-groups, else ~/.local/state."""
    base = os.environ.get("XDG_STATE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".local" / "state") / "machine-groups"


def key_folder(state_dir: Path, key: str) -> Path:
    """The folder of one machine key (created, private), named by a hash of the key."""
    # The key itself is a credential: it names nothing on disk, and is never stored.
    digest = hashlib.sha256(b"machine-groups agent state\0" + key.encode()).hexdigest()
    folder = state_dir / f"machine-{digest[:32]}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


class AgentLock:
    """An exclusive lock on the key's folder, held for the agent's life; the file says
    which process holds it."""

    def __init__(self, folder: Path) -> None:
        path = folder / LOCK_FILE
        # Not inherited by flows (Python's descriptors are close-on-exec): a flow left
        # running by a killed agent does not keep the next agent out.
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise AnotherAgent(
                f"another agent is already running for this machine on this host (pid"
                f" {holder}, lock {path}); stop it first: a machine runs one flow at a time"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Let the next agent in (exiting does too)."""
        os.close(self._fd)


@dataclass(frozen=True)
class FlowRecord:
    """A flow the agent started: its run, its process group, and who led the group."""

    run_id: str
    group: int
    leader_start: str | None  # against the reuse of the group's id
    boot: str | None


class Ledger:
    """The record of the flow the agent runs, in the key's folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / FLOW_FILE

    def record(self, run_id: str, pid: int) -> None:
        """Record a flow just started as the leader of its own group, `pid`."""
        record = FlowRecord(run_id, pid, start_time(pid), boot_id())
        temporary = self.path.with_name(f".{FLOW_FILE}.{os.getpid()}")
        try:
            # Written aside then renamed: a crash leaves the old record or the new, never half.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(asdict(record), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as error:
            # A flow the next agent could not find must not run: the caller kills it.
            raise AgentError(f"could not record the flow of run {run_id}: {error}") from None

    def clear(self) -> None:
        """Forget the flow: it has ended, and nothing of its group is left."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def leftover(self) -> FlowRecord | None:
        """The flow a previous agent recorded and did not clear, if any."""
        try:
            fields = json.loads(self.path.read_text())
            return FlowRecord(
                str(fields["run_id"]),
                int(fields["group"]),
                fields["leader_start"],
                fields["boot"],
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            # Never written so (records are replaced whole): someone must look at it.
            raise AgentError(
                f"{self.path} is not a readable flow record ({error}): stop the flow it"
                " names, if any still runs, then delete it"
            ) from None
