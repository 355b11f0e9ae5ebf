"""One desktop flow as a local program: FLOWS/<flowName>, inputs on stdin, JSON on stdout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The server accepts at most 64 KiB of output JSON (measured as compact, ASCII-escaped JSON).
OUTPUT_LIMIT_BYTES = 64 * 1024
STDOUT_LIMIT_BYTES = OUTPUT_LIMIT_BYTES
STDOUT_EXCERPT_CHARS = 4_000
STDERR_TAIL_CHARS = 500
READ_CHUNK_BYTES = 65_536
TERMINATE_GRACE_SECONDS = 5.0
# A flow's background child may hold its pipes open after it exits: read this long, no more.
DRAIN_SECONDS = 2.0


class FlowNotRunnable(Exception):
    """The flow names no program the agent may run, or the program would not start."""


@dataclass(frozen=True)
class FlowResult:
    """How a flow ended: the outcome, the output to report, and why it failed."""

    succeeded: bool
    output: Any
    message: str | None


def find_program(flows_dir: Path, flow_name: str) -> Path:
    """The executable FLOWS/<flowName>; FlowNotRunnable when the name escapes or names none."""
    # Symbolic links placed in the folder are followed: who controls the folder decides.
    plain = flow_name not in ("", ".", "..") and flow_name == Path(flow_name).name
    if not plain or "\\" in flow_name or "\0" in flow_name:
        raise FlowNotRunnable(f"flow name {flow_name!r} is not a file name in the flows folder")
    program = flows_dir / flow_name
    if not program.exists():
        raise FlowNotRunnable(f"no program named {flow_name!r} in {flows_dir}")
    if not program.is_file():
        raise FlowNotRunnable(f"{program} is not a file: a flow is a program file")
    if not os.access(program, os.X_OK):
        raise FlowNotRunnable(f"{program} is not executable: make it so (chmod +x {program})")
    return program


class _Capture:
    """What a program wrote on one pipe: the first or the last `limit` bytes of it."""

    def __init__(self, limit: int, *, keep_tail: bool) -> None:
        self.limit = limit
        self.keep_tail = keep_tail
        self.data = bytearray()
        self.overflowed = False

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        """Read the pipe to its end, keeping at most `limit` bytes."""
        while stream is not None and (chunk := await stream.read(READ_CHUNK_BYTES)):
            self.data += chunk
            if len(self.data) > self.limit:
                self.overflowed = True
                kept = self.data[-self.limit :] if self.keep_tail else self.data[: self.limit]
                self.data = bytearray(kept)

    def text(self) -> str:
        """The kept bytes as text."""
        return self.data.decode("utf-8", errors="replace")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def output_of(stdout: str, *, complete: bool) -> Any:
    """The run's output: the JSON on stdout, else {"stdout": the text, truncated}."""
    if not stdout.strip():
        return None
    if complete:
        try:
            value = json.loads(stdout, parse_constant=_reject_constant)
        except ValueError:
            pass
        else:
            if len(json.dumps(value, separators=(",", ":"))) <= OUTPUT_LIMIT_BYTES:
                return value
            complete = False
    excerpt = stdout[:STDOUT_EXCERPT_CHARS]
    truncated = not complete or len(stdout) > STDOUT_EXCERPT_CHARS
    return {"stdout": excerpt + ("…" if truncated else "")}


def failure_message(exit_code: int, stderr: str) -> str:
    """Why a flow failed: its exit status and the tail of its stderr."""
    if exit_code < 0:
        reason = f"killed by {signal.Signals(-exit_code).name}"
    else:
        reason = f"exit code {exit_code}"
    tail = stderr.strip()[-STDERR_TAIL_CHARS:]
    return f"{reason}: {tail}" if tail else reason


class FlowProcess:
    """A flow program in its own process group, so a Ctrl-C meant for the agent spares it."""

    def __init__(self, process: asyncio.subprocess.Process, inputs: Any) -> None:
        self._process = process
        self._stdout = _Capture(STDOUT_LIMIT_BYTES, keep_tail=False)
        self._stderr = _Capture(STDERR_TAIL_CHARS * 4, keep_tail=True)
        self._io = [
            asyncio.create_task(self._feed(inputs)),
            asyncio.create_task(self._stdout.drain(process.stdout)),
            asyncio.create_task(self._stderr.drain(process.stderr)),
        ]

    @classmethod
    async def start(cls, program: Path, inputs: Any, env: Mapping[str, str]) -> FlowProcess:
        """Start the program with the run's inputs as JSON on its stdin."""
        try:
            process = await asyncio.create_subprocess_exec(
                str(program),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=program.parent,
                env=dict(env),
                start_new_session=True,
            )
        except OSError as error:
            raise FlowNotRunnable(f"could not start {program}: {error}") from None
        return cls(process, inputs)

    @property
    def pid(self) -> int:
        """The program's pid: the id of its process group."""
        return self._process.pid

    async def _feed(self, inputs: Any) -> None:
        stdin = self._process.stdin
        if stdin is None:
            return
        try:
            stdin.write(json.dumps(inputs).encode())
            await stdin.drain()
            stdin.close()
            await stdin.wait_closed()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the program exited without reading its inputs: its exit status tells

    async def wait(self) -> FlowResult:
        """Wait for the program to exit and say how it went."""
        exit_code = await self._process.wait()
        _done, pending = await asyncio.wait(self._io, timeout=DRAIN_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._io, return_exceptions=True)
        output = output_of(self._stdout.text(), complete=not self._stdout.overflowed)
        if exit_code == 0:
            return FlowResult(True, output, None)
        return FlowResult(False, output, failure_message(exit_code, self._stderr.text()))

    async def terminate(self) -> None:
        """SIGTERM to the program's group; SIGKILL if it has not exited after a grace period."""
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._process.wait(), TERMINATE_GRACE_SECONDS)
        except TimeoutError:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the program's group at once: the program and whatever it left behind."""
        # Also once the program has exited: children it left in its group die with the run.
        # The group's id is not reused while the group has members; without members this
        # finds nothing (a new group taking the id in between would need the pid counter
        # to wrap around to it within that moment).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)

    def _signal(self, signum: signal.Signals) -> None:
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signum)
