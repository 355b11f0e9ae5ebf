"""Dispatch benchmark: enqueue-to-claim latency and end-to-end run throughput.

Usage, from the repository root:

    .venv/bin/python bench/dispatch.py
    .venv/bin/python bench/dispatch.py --latency-runs 200 --throughput-runs 1000 --agents 20
    .venv/bin/python bench/dispatch.py --only latency      # phases: costs, latency, throughput

It starts `machine-groups serve` as a subprocess on an embedded SQLite file in a
temporary folder, registers `--agents` machines in one group with one connection, and
drives them as HTTP long-poll clients (httpx) from this process. It reports:

- baseline: the latency of a trivial `{ __typename }` request, as a user and as a machine
  agent (an agent call also records the machine's heartbeat), on the same server;
- costs: latency and server CPU of each dispatch request kind, one at a time;
- (a) enqueue-to-claim latency, p50/p99: with agents idle in `claimNextRun(waitSeconds)`,
  the time from sending `startRun` to the waiting `claimNextRun` returning that run;
  measured with one waiting agent and with all of them waiting;
- (b) completed runs per second end to end: K runs are queued, then the agents claim and
  complete them as fast as they can.

Each line also gives the server process's CPU time per request or run (from /proc), which
is steadier than wall-clock time on a busy machine. Shared machines are noisy: read the
results as ratios to the baseline of the same run. The targets it prints: enqueue-to-claim
p99 under 25 ms, at least 200 completed runs/s. Not part of the test suite.

PostgreSQL mode, several servers on one database:

    .venv/bin/python bench/dispatch.py --postgres postgresql+asyncpg://mg@127.0.0.1:55432/postgres

runs only the drains, over HTTP long polls (b) and on the channel (d), first against one
server and then against two servers on one database (`--servers 1` stops after the
first), each on a fresh database created on that PostgreSQL server and dropped
afterwards. With two servers, runs are started and agents connect through both, half
each. It prints the servers' CPU per completed run, summed, and its ratio two to one
(target: at most 1.15x): this machine's two cores cannot show a throughput ratio.

Phase `agents` starts `--real-agents` real `machine-groups agent` processes (10) with
bash flows: startRun answered -> flow started (p50 < 12 ms, p99 < 25 ms), cancelRun
answered -> flow process gone (p99 < 250 ms), and no-op runs/s (>= 150), on the channel
and over HTTP (`--real-ways`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-key-0123456789abcdef0123456789"
PASSWORD = "bench group password"
TARGET_P99_MS = 25.0
TARGET_RUNS_PER_SECOND = 200.0
POLL_SECONDS = 3  # how long an idle agent's claimNextRun waits in the latency phase

START = """
mutation($c: ID!, $f: String!) {
  startRun(input: {connectionId: $c, flowName: $f}) { run { id } errors { code message } }
}"""
CLAIM = """
mutation($w: Int!) { claimNextRun(waitSeconds: $w) { run { id } errors { code message } } }"""
HEARTBEAT = "mutation { heartbeat { machine { currentRun { id } } errors { code message } } }"
COMPLETE = """
mutation($id: ID!) {
  completeRun(id: $id, outcome: SUCCEEDED) { run { id status } errors { code message } }
}"""


class Server:
    """`machine-groups serve` in a subprocess, on a SQLite file in `folder`."""

    def __init__(self, folder: Path, max_queued_runs: int, database_url: str | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.database = folder / "db.sqlite"
        self.env = {
            **os.environ,
            "MG_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{self.database}",
            "MG_SECRET_KEY": SECRET,
            "MG_POLICY_DIR": str(REPO / "policies"),
            "MG_MAX_QUEUED_RUNS": str(max_queued_runs),
            "MG_GRAPHIQL": "false",
            "PYTHONPATH": str(REPO),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until /healthz answers."""
        command = [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)]
        with open(self.folder / "server.log", "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.folder, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.folder / 'server.log'}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).is_success:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not start within 30 s")

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    @property
    def pid(self) -> int:
        """The server process's id."""
        return self.process.pid if self.process is not None else -1

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server process has used so far (Linux /proc)."""
        if self.process is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_per(self, since: float, count: int) -> str:
        """Server CPU per item since `since` (a `cpu_seconds()` reading), as text."""
        return f"server CPU {(self.cpu_seconds() - since) / count * 1000:5.1f} ms each"

    def admin_token(self) -> str:
        """A bearer token for the bootstrapped `admin`, signed with the server's key."""
        url = self.env["MG_DATABASE_URL"]
        if url.startswith("postgresql"):
            user_id = asyncio.run(
                _postgres_fetch(url, "SELECT id FROM users WHERE name_key = 'admin'")
            )
        else:
            with sqlite3.connect(self.database) as db:
                (user_id,) = db.execute("SELECT id FROM users WHERE name_key = 'admin'").fetchone()
        now = datetime.now(UTC)
        claims = {"sub": user_id, "name": "admin", "iat": now, "exp": now + timedelta(days=1)}
        return jwt.encode(claims, SECRET, algorithm="HS256")


def payload_of(response: httpx.Response) -> dict[str, Any]:
    """The single mutation payload of a response; fails loudly on any error."""
    response.raise_for_status()
    body = response.json()
    if "errors" in body:
        raise RuntimeError(body["errors"])
    (payload,) = body["data"].values()
    if isinstance(payload, dict) and payload.get("errors"):
        raise RuntimeError(payload["errors"])
    assert isinstance(payload, dict)
    return payload


def setup(server: Server, agents: int) -> tuple[str, str, list[str]]:
    """Admin token, connection id, and one machine key per agent, all in one group."""
    token = server.admin_token()
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:

        def ok(query: str, **variables: Any) -> dict[str, Any]:
            return payload_of(
                client.post(server.url, json={"query": query, "variables": variables})
            )

        me = client.post(server.url, json={"query": "{ me { id } }"}).json()["data"]["me"]["id"]
        ok(
            "mutation($u: ID!) { setUserPremium(userId: $u, premium: true) { errors { code } } }",
            u=me,
        )
        group = ok(
            'mutation { createMachineGroup(input: {name: "bench"}) {'
            " machineGroup { id } errors { code } } }"
        )["machineGroup"]["id"]
        keys = []
        for number in range(agents):
            registered = ok(
                "mutation($n: String!) { registerMachine(input: {name: $n}) {"
                " machine { id } machineKey errors { code } } }",
                n=f"bench-{number:02d}",
            )
            ok(
                "mutation($m: ID!, $g: ID!, $p: String!) { addMachineToGroup(input:"
                " {machineId: $m, groupId: $g, password: $p}) { errors { code } } }",
                m=registered["machine"]["id"],
                g=group,
                p=PASSWORD,
            )
            keys.append(registered["machineKey"])
        connection = ok(
            'mutation($g: ID!) { createConnection(input: {name: "bench", groupId: $g,'
            ' username: "svc", password: "pw"}) { connection { id } errors { code } } }',
            g=group,
        )["connection"]["id"]
    return token, connection, keys


class Client:
    """GraphQL over one shared async HTTP client."""

    def __init__(self, url: str, http: httpx.AsyncClient) -> None:
        self.url, self.http = url, http

    async def call(self, token: str, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.http.post(
            self.url,
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
        return payload_of(response)

    async def typename(self, token: str) -> None:
        response = await self.http.post(
            self.url, json={"query": "{ __typename }"}, headers={"Authorization": f"Bearer {token}"}
        )
        response.raise_for_status()


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def describe(name: str, samples_s: list[float]) -> str:
    ms = [sample * 1000 for sample in samples_s]
    return (
        f"{name:<46} p50 {percentile(ms, 0.5):7.2f} ms   p99 {percentile(ms, 0.99):7.2f} ms"
        f"   mean {statistics.fmean(ms):7.2f} ms   (n={len(ms)})"
    )


async def timed(count: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    """Wall-clock seconds of `count` sequential calls."""
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - began)
    return samples


async def costs(
    server: Server, client: Client, admin: str, connection: str, key: str, count: int
) -> None:
    """Server CPU and latency per request kind, one request at a time (no contention)."""

    async def claim_and_complete() -> None:
        claimed = await client.call(key, CLAIM, w=0)
        await client.call(key, COMPLETE, id=claimed["run"]["id"])

    numbers = iter(range(10**9))
    kinds: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("claimNextRun(waitSeconds: 0), queue empty", lambda: client.call(key, CLAIM, w=0)),
        ("startRun", lambda: client.call(admin, START, c=connection, f=f"c-{next(numbers)}")),
        ("claimNextRun + completeRun (2 requests)", claim_and_complete),
    ]
    print("server cost per request, one at a time:")
    for name, call in kinds:
        cpu = server.cpu_seconds()
        samples = await timed(count, call)
        print(f"{describe('  ' + name, samples)}   {server.cpu_per(cpu, count)}")


async def latency(
    client: Client, admin: str, connection: str, keys: list[str], count: int
) -> tuple[list[float], list[float]]:
    """Enqueue-to-claim with every agent of `keys` idle in a long poll.

    Returns the enqueue-to-claim samples and the startRun round trips of the same runs.
    """
    waiting: asyncio.Queue[str] = asyncio.Queue()  # keys of agents whose poll was sent
    got: asyncio.Queue[tuple[str, str, float]] = asyncio.Queue()  # (key, run id, when)
    stop = asyncio.Event()

    async def agent(key: str) -> None:
        # Polls are never cancelled: a claim made for a request the client abandoned
        # would leave its run RUNNING on a machine whose agent does not know it.
        while not stop.is_set():
            poll = asyncio.create_task(client.call(key, CLAIM, w=POLL_SECONDS))
            await asyncio.sleep(0)
            waiting.put_nowait(key)
            claimed = await poll
            if claimed["run"] is not None:
                got.put_nowait((key, claimed["run"]["id"], time.perf_counter()))

    tasks = [asyncio.create_task(agent(key)) for key in keys]
    idle: set[str] = set()
    to_claim: list[float] = []
    round_trips: list[float] = []
    try:
        for number in range(count):
            while len(idle) < len(keys):
                idle.add(await asyncio.wait_for(waiting.get(), 30))
            await asyncio.sleep(0.02)  # let every poll reach the server and start waiting
            began = time.perf_counter()
            started = await client.call(admin, START, c=connection, f=f"latency-{number}")
            round_trips.append(time.perf_counter() - began)
            key, run_id, when = await asyncio.wait_for(got.get(), 30)
            assert run_id == started["run"]["id"], "an agent claimed a run it was not given"
            to_claim.append(when - began)
            idle.discard(key)
            await client.call(key, COMPLETE, id=run_id)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), POLL_SECONDS + 30)
    return to_claim, round_trips


async def throughput(
    server: Server, client: Client, admin: str, connection: str, keys: list[str], runs: int
) -> float:
    """Queue `runs` runs, then let the agents claim and complete them as fast as they can.

    Prints both rates; returns completed runs per second.
    """
    starters = 8

    async def starter(index: int) -> None:
        for number in range(index, runs, starters):
            await client.call(admin, START, c=connection, f=f"throughput-{number}")

    cpu, began = server.cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(starter(index) for index in range(starters)))
    rate = runs / (time.perf_counter() - began)
    name = f"startRun, {starters} concurrent starters"
    print(f"  {name:<44} {rate:7.1f} runs/s   {server.cpu_per(cpu, runs)}")
    done = 0

    async def agent(key: str) -> None:
        nonlocal done
        machine = (await client.call(key, HEARTBEAT))["machine"]
        if machine["currentRun"] is not None:  # not expected: say so, and carry on
            print(f"  an agent found itself holding run {machine['currentRun']['id']}")
            await client.call(key, COMPLETE, id=machine["currentRun"]["id"])
        while done < runs:
            claimed = await client.call(key, CLAIM, w=1)
            if claimed["run"] is not None:
                await client.call(key, COMPLETE, id=claimed["run"]["id"])
                done += 1

    cpu, began = server.cpu_seconds(), time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(agent(key) for key in keys)), 60 + runs / 5)
    except TimeoutError:
        raise RuntimeError(f"only {done} of {runs} runs completed in time") from None
    rate = runs / (time.perf_counter() - began)
    name = f"claimNextRun + completeRun, {len(keys)} agents"
    print(f"  {name:<44} {rate:7.1f} runs/s   {server.cpu_per(cpu, runs)}")
    return rate


MAINTENANCE = """
mutation($g: ID!, $on: Boolean!) {
  setMachineGroupMaintenance(id: $g, enabled: $on) { errors { code message } }
}"""
GROUP_OF = "{ connections { id group { id } } }"
CANCEL = "mutation($id: ID!) { cancelRun(id: $id) { errors { code message } } }"
CONFIRM = """
mutation($id: ID!) { confirmRun(id: $id) { run { id } errors { code message } } }"""


async def group_of(client: Client, admin: str, connection: str) -> str:
    """The id of the group a connection aims at."""
    data = (
        await client.http.post(
            client.url,
            json={"query": GROUP_OF},
            headers={"Authorization": f"Bearer {admin}"},
        )
    ).json()["data"]["connections"]
    (group,) = [found["group"]["id"] for found in data if found["id"] == connection]
    return str(group)


class ChannelAgent:
    """An agent on the live channel, as `machine-groups agent` holds it
    (app/agent/channel.py): each RUN is confirmed on the socket, then completed there."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.live: Any = None
        self.offered: asyncio.Queue[tuple[str, float]] = asyncio.Queue()

    async def open(self) -> None:
        from app.agent.channel import LiveChannel

        self.live = await LiveChannel.open(self.url, self.key, f"bench-{id(self)}")
        ready = await self.live.next_message()
        assert ready["kind"] == "READY", ready

    async def serve(self, complete: bool, done: Callable[[], None]) -> None:
        """Confirm (and complete, if `complete`) each run offered, until cancelled."""
        while True:
            message = await self.live.next_message()
            if message["kind"] != "RUN":
                continue
            run_id = message["runId"]
            confirmed = (await self.live.call(CONFIRM, {"id": run_id}))["confirmRun"]
            assert not confirmed["errors"], confirmed
            self.offered.put_nowait((run_id, time.perf_counter()))
            if complete:
                completed = (await self.live.call(COMPLETE, {"id": run_id}))["completeRun"]
                assert not completed["errors"], completed
                done()

    async def close(self) -> None:
        if self.live is not None:
            await self.live.close()


async def channel_latency(
    client: Client, admin: str, connection: str, keys: list[str], count: int
) -> tuple[list[float], list[float]]:
    """startRun sent -> the run pushed on an idle agent's channel and confirmed, with every
    agent of `keys` idle on its channel. Returns those samples and the startRun round trips."""
    agents = [ChannelAgent(client.url, key) for key in keys]
    await asyncio.gather(*(agent.open() for agent in agents))
    tasks = [asyncio.create_task(agent.serve(False, lambda: None)) for agent in agents]
    got: asyncio.Queue[tuple[ChannelAgent, str, float]] = asyncio.Queue()

    async def relay(agent: ChannelAgent) -> None:
        while True:
            run_id, when = await agent.offered.get()
            got.put_nowait((agent, run_id, when))

    relays = [asyncio.create_task(relay(agent)) for agent in agents]
    to_start: list[float] = []
    round_trips: list[float] = []
    try:
        for number in range(count):
            await asyncio.sleep(0.02)
            began = time.perf_counter()
            started = await client.call(admin, START, c=connection, f=f"channel-{number}")
            round_trips.append(time.perf_counter() - began)
            agent, run_id, when = await asyncio.wait_for(got.get(), 30)
            assert run_id == started["run"]["id"]
            to_start.append(when - began)
            await agent.live.call(COMPLETE, {"id": run_id})
    finally:
        for task in [*tasks, *relays]:
            task.cancel()
        await asyncio.gather(*tasks, *relays, return_exceptions=True)
        await asyncio.gather(*(agent.close() for agent in agents))
    return to_start, round_trips


async def channel_throughput(
    server: Server, client: Client, admin: str, connection: str, keys: list[str], runs: int
) -> float:
    """`runs` queued while the group is in maintenance; the agents hold their channels;
    maintenance ends and they drain the queue (offer, confirm, complete). Runs/s."""
    group = await group_of(client, admin, connection)
    await client.call(admin, MAINTENANCE, g=group, on=True)
    starters = 8

    async def starter(index: int) -> None:
        for number in range(index, runs, starters):
            await client.call(admin, START, c=connection, f=f"drain-{number}")

    await asyncio.gather(*(starter(index) for index in range(starters)))
    agents = [ChannelAgent(client.url, key) for key in keys]
    await asyncio.gather(*(agent.open() for agent in agents))
    finished = asyncio.Event()
    done = 0

    def one_done() -> None:
        nonlocal done
        done += 1
        if done >= runs:
            finished.set()

    tasks = [asyncio.create_task(agent.serve(True, one_done)) for agent in agents]
    print(f"  queued; {len(agents)} agents on the channel; draining (server pid {server.pid})")
    try:
        cpu, began = server.cpu_seconds(), time.perf_counter()
        await client.call(admin, MAINTENANCE, g=group, on=False)
        try:
            await asyncio.wait_for(finished.wait(), 60 + runs / 5)
        except TimeoutError:
            raise RuntimeError(f"only {done} of {runs} runs completed in time") from None
        rate = runs / (time.perf_counter() - began)
        used = server.cpu_seconds() - cpu
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(agent.close() for agent in agents))
    name = f"channel: offer + confirm + complete, {len(keys)} agents"
    print(f"  {name:<44} {rate:7.1f} runs/s   server CPU {used / runs * 1000:5.1f} ms each")
    return rate


# Flows of the real agents: bash builtins only, so that a flow costs one exec.
MARK_FLOW = '#!/bin/bash\necho "$EPOCHREALTIME" > "$MG_BENCH_MARKS/$MG_RUN_ID"\n'
HOLD_FLOW = '#!/bin/bash\necho "$$" > "$MG_BENCH_MARKS/$MG_RUN_ID.pid"\nexec sleep 60\n'
NOOP_FLOW = "#!/bin/bash\nexit 0\n"
TARGET_START_P50_MS, TARGET_START_P99_MS = 12.0, 25.0
TARGET_CANCEL_P99_MS = 250.0
TARGET_REAL_RUNS_PER_SECOND = 150.0


class RealAgents:
    """`machine-groups agent` processes, one per key, on flows in `folder`/flows."""

    def __init__(self, server: Server, keys: list[str], folder: Path, http: bool) -> None:
        self.flows, self.marks = folder / "flows", folder / "marks"
        for path in (self.flows, self.marks):
            path.mkdir(parents=True, exist_ok=True)
        for name, body in (("mark", MARK_FLOW), ("hold", HOLD_FLOW), ("noop", NOOP_FLOW)):
            (self.flows / name).write_text(body)
            (self.flows / name).chmod(0o755)
        env = {**os.environ, "MG_BENCH_MARKS": str(self.marks), "PYTHONPATH": str(REPO)}
        options = ["--http"] if http else []
        self.processes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app.cli",
                    "agent",
                    "--server",
                    server.url,
                    "--flows",
                    str(self.flows),
                    "--state-dir",
                    str(folder / f"state-{index}"),
                    "--heartbeat-interval",
                    "5",
                    *options,
                ],
                env={**env, "MG_MACHINE_KEY": key},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for index, key in enumerate(keys)
        ]

    def wait_started(self) -> None:
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            if "started: machine" not in line:
                raise RuntimeError(f"an agent did not start: {line!r}")

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.processes:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait(10)


def _text_of(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


async def _until(path: Path, seconds: float = 30.0) -> str:
    """The text a flow wrote at `path`, polled every half millisecond."""
    deadline = time.monotonic() + seconds
    while not (text := _text_of(path)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never came")
        await asyncio.sleep(0.0005)
    return text


def _pid_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


async def real_agents(
    server: Server,
    client: Client,
    admin: str,
    connection: str,
    keys: list[str],
    arguments: argparse.Namespace,
    folder: Path,
    http: bool,
) -> list[str]:
    """Real agents: startRun answered -> flow started, cancelRun answered -> flow gone,
    and completed runs/s of a no-op flow. Returns the target lines."""
    met = {True: "met", False: "MISSED"}
    way = "HTTP long polling" if http else "the live channel"
    agents = RealAgents(server, keys, folder / ("http" if http else "channel"), http)
    targets = []
    try:
        agents.wait_started()
        await asyncio.sleep(1.0)
        print(f"(e) {len(keys)} real agents on {way}, idle: startRun answered -> flow started")
        starts = []
        for _number in range(arguments.latency_runs):
            await asyncio.sleep(0.02)
            run_id = (await client.call(admin, START, c=connection, f="mark"))["run"]["id"]
            answered = time.time()
            started = float(await _until(agents.marks / run_id))
            starts.append(max(0.0, started - answered))
        print(describe("  startRun answered -> flow started", starts))
        p50, p99 = percentile(starts, 0.5) * 1000, percentile(starts, 0.99) * 1000
        targets.append(
            f"  {way}: startRun -> flow started p50 < {TARGET_START_P50_MS:.0f} ms and p99 <"
            f" {TARGET_START_P99_MS:.0f} ms: {p50:.1f} / {p99:.1f} ms,"
            f" {met[p50 < TARGET_START_P50_MS and p99 < TARGET_START_P99_MS]}"
        )
        cancels = []
        for _number in range(arguments.cancel_runs):
            run_id = (await client.call(admin, START, c=connection, f="hold"))["run"]["id"]
            pid = int(await _until(agents.marks / f"{run_id}.pid"))
            await client.call(admin, CANCEL, id=run_id)
            answered = time.perf_counter()
            while not _pid_gone(pid):
                if time.perf_counter() - answered > 30:
                    raise RuntimeError(f"the flow of cancelled run {run_id} did not stop")
                await asyncio.sleep(0.0005)
            cancels.append(time.perf_counter() - answered)
        print(describe("  cancelRun answered -> flow process gone", cancels))
        p99 = percentile(cancels, 0.99) * 1000
        targets.append(
            f"  {way}: cancelRun -> flow gone p99 < {TARGET_CANCEL_P99_MS:.0f} ms:"
            f" {p99:.1f} ms, {met[p99 < TARGET_CANCEL_P99_MS]}"
        )
        runs = arguments.real_runs
        group = await group_of(client, admin, connection)
        await client.call(admin, MAINTENANCE, g=group, on=True)
        for _number in range(runs):
            await client.call(admin, START, c=connection, f="noop")
        done_before = _finished(server)
        cpu, agents_cpu = server.cpu_seconds(), agents.cpu_seconds()
        began = time.perf_counter()
        await client.call(admin, MAINTENANCE, g=group, on=False)
        while _finished(server) - done_before < runs:
            if time.perf_counter() - began > 60 + runs / 5:
                agents.stop()
                for process in agents.processes:
                    print((process.stdout.read() if process.stdout else "")[-1500:])
                raise RuntimeError("the real agents did not finish the runs in time")
            await asyncio.sleep(0.02)
        rate = runs / (time.perf_counter() - began)
        used, agents_used = server.cpu_seconds() - cpu, agents.cpu_seconds() - agents_cpu
        print(
            f"  {len(keys)} agents, {runs} no-op runs: {rate:7.1f} runs/s   server CPU"
            f" {used / runs * 1000:5.1f} ms, agents (with their flows)"
            f" {agents_used / runs * 1000:5.1f} ms per run"
        )
        targets.append(
            f"  {way}: completed runs >= {TARGET_REAL_RUNS_PER_SECOND:.0f}/s with"
            f" {len(keys)} real agents: {rate:.1f}/s, {met[rate >= TARGET_REAL_RUNS_PER_SECOND]}"
        )
    finally:
        agents.stop()
    return targets


def _finished(server: Server) -> int:
    with sqlite3.connect(server.database) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM runs WHERE status IN ('SUCCEEDED', 'FAILED')"
        ).fetchone()
    return int(count)


PHASES = ("costs", "latency", "throughput", "channel", "agents")


async def measure(server: Server, arguments: argparse.Namespace) -> None:
    """Every phase asked for, then the targets and the ratios to the baseline."""
    admin, connection, keys = setup(server, arguments.agents)
    phases = set(arguments.only.split(",")) if arguments.only else set(PHASES)
    size = len(keys) + 16
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    met = {True: "met", False: "MISSED"}
    targets, ratios = [], []
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        client = Client(server.url, http)
        await timed(20, lambda: client.typename(admin))  # warm up
        print("baseline, the same server in the same run:")
        count = arguments.baseline_runs
        cpu = server.cpu_seconds()
        user = await timed(count, lambda: client.typename(admin))
        print(f"{describe('  { __typename } as a user', user)}   {server.cpu_per(cpu, count)}")
        cpu = server.cpu_seconds()
        agent = await timed(count, lambda: client.typename(keys[0]))
        print(f"{describe('  { __typename } as an agent', agent)}   {server.cpu_per(cpu, count)}")
        unit = percentile(user, 0.5)
        ratios.append(f"  agent {{ __typename }} p50: {percentile(agent, 0.5) / unit:.2f}x")
        if "costs" in phases:
            await costs(server, client, admin, connection, keys[0], count)
        if "latency" in phases:
            print("(a) enqueue-to-claim: startRun sent -> the waiting claimNextRun returned it")
            for agents in (keys[:1], keys):
                cpu = server.cpu_seconds()
                samples, starts = await latency(
                    client, admin, connection, agents, arguments.latency_runs
                )
                name = f"  {len(agents)} agent(s) waiting"
                print(f"{describe(name, samples)}   {server.cpu_per(cpu, len(samples))}")
                print(describe("    of which the startRun round trip", starts))
                p99 = percentile(samples, 0.99) * 1000
                targets.append(
                    f"  enqueue-to-claim p99 < {TARGET_P99_MS:.0f} ms, {len(agents)} agent(s)"
                    f" waiting: {p99:.1f} ms, {met[p99 < TARGET_P99_MS]}"
                )
                ratios.append(
                    f"  enqueue-to-claim, {len(agents)} agent(s) waiting:"
                    f" p50 {percentile(samples, 0.5) / unit:.2f}x,"
                    f" p99 {percentile(samples, 0.99) / unit:.2f}x"
                )
        if "throughput" in phases:
            print(f"(b) throughput: {arguments.throughput_runs} runs queued, then drained")
            rate = await throughput(
                server, client, admin, connection, keys, arguments.throughput_runs
            )
            targets.append(
                f"  completed runs >= {TARGET_RUNS_PER_SECOND:.0f}/s with {len(keys)} agents:"
                f" {rate:.1f}/s, {met[rate >= TARGET_RUNS_PER_SECOND]}"
            )
            ratios.append(f"  one completed run per {1 / rate / unit:.2f} baseline requests")
        if "channel" in phases:
            print("(c) the live channel, as the agent holds it: startRun sent -> pushed, confirmed")
            for agents in (keys[:1], keys):
                cpu = server.cpu_seconds()
                samples, starts = await channel_latency(
                    client, admin, connection, agents, arguments.latency_runs
                )
                name = f"  {len(agents)} agent(s) idle on the channel"
                print(f"{describe(name, samples)}   {server.cpu_per(cpu, len(samples))}")
                print(describe("    of which the startRun round trip", starts))
            print(f"(d) channel throughput: {arguments.throughput_runs} runs queued, then drained")
            rate = await channel_throughput(
                server, client, admin, connection, keys, arguments.throughput_runs
            )
            targets.append(
                f"  channel: completed runs >= {TARGET_RUNS_PER_SECOND:.0f}/s with"
                f" {len(keys)} agents: {rate:.1f}/s, {met[rate >= TARGET_RUNS_PER_SECOND]}"
            )
    if "agents" in phases:
        real = keys[: arguments.real_agents]
        async with httpx.AsyncClient(timeout=60) as http:
            client = Client(server.url, http)
            for over_http in [way == "http" for way in arguments.real_ways.split(",")]:
                targets += await real_agents(
                    server, client, admin, connection, real, arguments, server.folder, over_http
                )
    print("targets:")
    print("\n".join(targets))
    print(f"ratios to the baseline (user {{ __typename }} p50 = {unit * 1000:.2f} ms):")
    print("\n".join(ratios))


def _libpq(url: str) -> str:
    """The libpq form of a SQLAlchemy PostgreSQL URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _postgres_fetch(url: str, sql: str) -> Any:
    """The first value of one query."""
    connection = await asyncpg.connect(_libpq(url))
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


async def _postgres_admin(url: str, sql: str) -> None:
    connection = await asyncpg.connect(_libpq(url))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def cluster_throughput(
    servers: list[Server], admin: str, connection: str, keys: list[str], runs: int
) -> tuple[float, float]:
    """(b) with the servers on one database: runs started and agents spread over all of
    them, each agent on one server. Returns completed runs per second."""
    size = len(keys) + 16
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        clients = [Client(server.url, http) for server in servers]
        starters = 8

        async def starter(index: int) -> None:
            client = clients[index % len(clients)]
            for number in range(index, runs, starters):
                await client.call(admin, START, c=connection, f=f"throughput-{number}")

        cpu = [server.cpu_seconds() for server in servers]
        began = time.perf_counter()
        await asyncio.gather(*(starter(index) for index in range(starters)))
        rate = runs / (time.perf_counter() - began)
        print(f"    startRun, {starters} concurrent starters: {rate:7.1f} runs/s")
        done = 0

        async def agent(index: int, key: str) -> None:
            nonlocal done
            client = clients[index % len(clients)]
            while done < runs:
                claimed = await client.call(key, CLAIM, w=1)
                if claimed["run"] is not None:
                    await client.call(key, COMPLETE, id=claimed["run"]["id"])
                    done += 1

        began = time.perf_counter()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(agent(index, key) for index, key in enumerate(keys))),
                60 + runs / 5,
            )
        except TimeoutError:
            raise RuntimeError(f"only {done} of {runs} runs completed in time") from None
        rate = runs / (time.perf_counter() - began)
        used = sum(
            server.cpu_seconds() - before for server, before in zip(servers, cpu, strict=True)
        )
        name = f"claimNextRun + completeRun, {len(keys)} agents"
        print(
            f"    {name:<44} {rate:7.1f} runs/s   servers' CPU {used / runs * 1000:5.1f} ms per run"
        )
    return rate, used / runs


async def cluster_channel_throughput(
    servers: list[Server], admin: str, connection: str, keys: list[str], runs: int
) -> tuple[float, float]:
    """(d) with the servers on one database: runs queued through all of them in
    maintenance, agents' channels spread over them, then drained. (runs/s, CPU/run)."""
    async with httpx.AsyncClient(timeout=60) as http:
        clients = [Client(server.url, http) for server in servers]
        group = await group_of(clients[0], admin, connection)
        await clients[0].call(admin, MAINTENANCE, g=group, on=True)
        starters = 8

        async def starter(index: int) -> None:
            client = clients[index % len(clients)]
            for number in range(index, runs, starters):
                await client.call(admin, START, c=connection, f=f"channel-{number}")

        await asyncio.gather(*(starter(index) for index in range(starters)))
        agents = [
            ChannelAgent(servers[index % len(servers)].url, key) for index, key in enumerate(keys)
        ]
        await asyncio.gather(*(agent.open() for agent in agents))
        finished, done = asyncio.Event(), 0

        def one_done() -> None:
            nonlocal done
            done += 1
            if done >= runs:
                finished.set()

        tasks = [asyncio.create_task(agent.serve(True, one_done)) for agent in agents]
        try:
            cpu = [server.cpu_seconds() for server in servers]
            began = time.perf_counter()
            await clients[-1].call(admin, MAINTENANCE, g=group, on=False)
            try:
                await asyncio.wait_for(finished.wait(), 60 + runs / 5)
            except TimeoutError:
                raise RuntimeError(f"only {done} of {runs} runs completed in time") from None
            rate = runs / (time.perf_counter() - began)
            used = sum(
                server.cpu_seconds() - before for server, before in zip(servers, cpu, strict=True)
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(agent.close() for agent in agents))
    name = f"channel: offer + confirm + complete, {len(keys)} agents"
    print(f"    {name:<44} {rate:7.1f} runs/s   servers' CPU {used / runs * 1000:5.1f} ms per run")
    return rate, used / runs


TARGET_CLUSTER_CPU = 1.15


def postgres_mode(arguments: argparse.Namespace, folder: Path) -> None:
    """Throughput and server CPU per run with one server, then two, each on a fresh
    database: over HTTP long polls, then on the channel."""
    base = arguments.postgres
    results: dict[tuple[int, str], tuple[float, float]] = {}
    for count in range(1, arguments.servers + 1):
        name = f"mg_bench_{os.getpid()}_{count}"
        asyncio.run(_postgres_admin(base, f'CREATE DATABASE "{name}"'))
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
        runs = arguments.throughput_runs
        servers = [
            Server(folder / f"{count}-{index}", max(500, runs), database_url=url)
            for index in range(count)
        ]
        try:
            for server in servers:
                server.start()
            admin, connection, keys = setup(servers[0], arguments.agents)
            print(
                f"(b) throughput, {count} server(s) on one PostgreSQL database:"
                f" {runs} runs queued, then drained"
            )
            results[count, "http"] = asyncio.run(
                cluster_throughput(servers, admin, connection, keys, runs)
            )
            results[count, "channel"] = asyncio.run(
                cluster_channel_throughput(servers, admin, connection, keys, runs)
            )
        finally:
            for server in servers:
                server.stop()
            asyncio.run(_postgres_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    if (2, "http") in results:
        print("targets:")
        for way in ("http", "channel"):
            (rate_1, cpu_1), (rate_2, cpu_2) = results[1, way], results[2, way]
            ratio = cpu_2 / cpu_1
            met = "met" if ratio <= TARGET_CLUSTER_CPU else "MISSED"
            print(
                f"  {way}: servers' CPU per completed run, two servers <= {TARGET_CLUSTER_CPU}x"
                f" one: {cpu_2 * 1000:.1f} / {cpu_1 * 1000:.1f} ms = {ratio:.2f}x, {met}"
                f" (runs/s {rate_2:.1f} / {rate_1:.1f} = {rate_2 / rate_1:.2f}x)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--throughput-runs", type=int, default=1000)
    parser.add_argument("--baseline-runs", type=int, default=200, help="also for costs")
    parser.add_argument(
        "--real-agents", type=int, default=10, help="agents processes (phase agents)"
    )
    parser.add_argument("--real-runs", type=int, default=1000, help="no-op runs (phase agents)")
    parser.add_argument("--cancel-runs", type=int, default=30, help="cancels (phase agents)")
    parser.add_argument("--real-ways", default="channel,http", help="channel, http or both")
    parser.add_argument("--only", help=f"comma-separated phases of {', '.join(PHASES)}")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="PostgreSQL server (SQLAlchemy URL): measure throughput with 1, then 2 servers",
    )
    parser.add_argument("--servers", type=int, choices=(1, 2), default=2, help="with --postgres")
    arguments = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    folder = Path(tempfile.mkdtemp(prefix="mg-bench-"))
    if arguments.postgres:
        try:
            postgres_mode(arguments, folder)
        finally:
            if not arguments.keep:
                shutil.rmtree(folder, ignore_errors=True)
        return
    server = Server(folder, max_queued_runs=max(500, arguments.throughput_runs))
    server.start()
    print(f"server pid {server.process.pid if server.process else '?'}, data in {folder}")
    keep = arguments.keep
    try:
        asyncio.run(measure(server, arguments))
    except BaseException:
        keep = True  # the server's log explains what went wrong
        raise
    finally:
        server.stop()
        if keep:
            print(f"kept {folder} (server.log is the server's output)")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
