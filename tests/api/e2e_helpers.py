"""Processes for the end-to-end tests: `machine-groups agent` and `machine-groups serve`.

Every wait here has a deadline; a process the test started is killed at teardown.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx

from tests.conftest import POLICIES

COMMAND = [sys.executable, "-m", "app.cli"]
KEY_VARIABLE = "MG_MACHINE_KEY"
# Long enough for a cold interpreter to import the app on a busy machine.
START_SECONDS = 60.0


def write_flow(folder: Path, name: str, body: str) -> Path:
    """An executable Python flow: `inputs` holds the JSON read from stdin, then `body` runs."""
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / name
    program.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, time\n"
        "inputs = json.load(sys.stdin)\n"
        f"{body.strip()}\n"
    )
    program.chmod(0o755)
    return program


def _environment(**extra: str) -> dict[str, str]:
    """This process's environment without any MG_* setting, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MG_")}
    env.update(extra)
    return env


class _Lines:
    """The lines a process prints on one stream, collected by a thread as they come."""

    def __init__(self, stream: IO[str], changed: threading.Condition) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = changed
        self._thread = threading.Thread(target=self._follow, args=(stream,), daemon=True)
        self._thread.start()

    def _follow(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def join(self, timeout: float) -> None:
        """Wait until the stream has been read to its end."""
        self._thread.join(timeout)


class AgentProcess:
    """A `machine-groups agent` subprocess whose printed lines the test follows."""

    def __init__(self, server_url: str, key: str, flows: Path, *, key_in_env: bool) -> None:
        command = [*COMMAND, "agent", "--server", server_url, "--flows", str(flows)]
        command += ["--heartbeat-interval", "0.5"]
        env = _environment(**({KEY_VARIABLE: key} if key_in_env else {}))
        if not key_in_env:
            command += ["--key", key]
        self.process = subprocess.Popen(
            command,
            cwd=flows.parent,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._changed = threading.Condition()
        self._stdout = _Lines(self.process.stdout, self._changed)
        self._stderr = _Lines(self.process.stderr, self._changed)

    @property
    def lines(self) -> list[str]:
        """What it printed on stdout so far."""
        with self._changed:
            return list(self._stdout.lines)

    @property
    def errors(self) -> list[str]:
        """What it printed on stderr so far."""
        with self._changed:
            return list(self._stderr.lines)

    def matching(self, pattern: str) -> list[str]:
        """The stdout lines so far that match a regular expression."""
        regex = re.compile(pattern)
        return [line for line in self.lines if regex.search(line)]

    def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        """The first stdout line matching `pattern`, waiting for it up to `timeout` seconds."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._stdout.lines:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stdout.closed:
                    raise AssertionError(
                        f"the agent printed no line matching {pattern!r}"
                        f" (exit {self.process.poll()}); stdout: {self._stdout.lines};"
                        f" stderr: {self._stderr.lines}"
                    )
                self._changed.wait(remaining)

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for it to exit on its own; its exit code, with all its output read."""
        code = self.process.wait(timeout=timeout)
        self._stdout.join(timeout)
        self._stderr.join(timeout)
        return code

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C: SIGINT, then its exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.finish(timeout)

    def kill(self) -> None:
        """SIGKILL, if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """`machine-groups serve` as a subprocess on a fixed port, on its own SQLite file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base_url}/graphql"
        self.env = _environment(
            MG_DATABASE_URL=f"sqlite+aiosqlite:///{folder / 'e2e.db'}",
            MG_SECRET_KEY="end-to-end-secret-key-0123456789abcdef0123456789",
            MG_POLICY_DIR=str(POLICIES),
            MG_GRAPHIQL="false",
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._log = folder / "server.log"

    def start(self) -> ServerProcess:
        """Start it and wait until it answers /healthz."""
        with self._log.open("ab") as log:
            self.process = subprocess.Popen(
                [*COMMAND, "serve", "--port", str(self.port)],
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not start; its log:\n{self._log.read_text()}")

    def crash(self) -> None:
        """SIGKILL: the server dies at once, dropping every connection."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 15 seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.crash()

    def command(self, *arguments: str) -> str:
        """Run another `machine-groups` command with the server's settings; its stdout."""
        done = subprocess.run(
            [*COMMAND, *arguments],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            check=True,
        )
        return done.stdout.strip()

    def graphql(self, token: str, query: str, variables: dict[str, Any] | None = None) -> Any:
        """The data of one request that must have no GraphQL errors."""
        response = httpx.post(
            self.url,
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]
