"""Shared pieces of the benchmarks: server subprocesses, /proc readings, a raw HTTP load.

Not a benchmark itself. Both servers of a comparison are started by the same code with
the same uvicorn configuration (`app.main.server_config`: loop, http and ws left on
"auto", the same `ws_max_size`), so the numbers of one run are comparable as ratios.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SECRET = "bench-secret-key-0123456789abcdef0123456789"
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def ws_implementation() -> str:
    """The WebSocket protocol class uvicorn's `ws="auto"` picks in this environment."""
    from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol

    return getattr(AutoWebSocketsProtocol, "__name__", "none")


class ServerProcess:
    """A server in a subprocess, its output in `log`; waits until /healthz answers."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.command, self.env, self.log = name, command, env, log
        self.port = free_port()
        self.command = [*command, "--port", str(self.port)]
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.ws_url = f"ws://127.0.0.1:{self.port}/graphql"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=REPO,
                env={**self.env, "PYTHONPATH": str(REPO)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).is_success:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start within 60 s; see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server process so far (Linux /proc)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        """Resident set size of the server process (Linux /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


def minimal_command() -> list[str]:
    return [sys.executable, str(REPO / "bench" / "minimal_server.py")]


def ours_command() -> list[str]:
    return [sys.executable, "-m", "app.cli", "serve"]


def ours_env(database: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MG_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "MG_SECRET_KEY": SECRET,
        "MG_POLICY_DIR": str(REPO / "policies"),
        "MG_GRAPHIQL": "false",
    }


async def http_load(
    url: str, body: bytes, token: str | None, concurrency: int, seconds: float
) -> tuple[int, int]:
    """POST `body` on `concurrency` keep-alive connections for `seconds`.

    A hand-rolled HTTP/1.1 client (asyncio streams), much lighter than httpx, so that the
    load generator, which shares the machine's cores, costs the servers as little as
    possible. Returns (responses, bad responses: not 200 or carrying GraphQL errors).
    """
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = (
        f"POST /graphql HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"{auth}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    end = time.monotonic() + seconds
    done, bad = 0, 0

    async def client() -> None:
        nonlocal done, bad
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < end:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                match = _LENGTH.search(head)
                assert match is not None, head
                payload = await reader.readexactly(int(match.group(1)))
                done += 1
                if head[9:12] != b"200" or payload.startswith(b'{"errors"'):
                    bad += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return done, bad


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def median(values: list[float]) -> float:
    return statistics.median(values)
