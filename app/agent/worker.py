"""The agent's work: recover after a restart, claim runs, run each flow under heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from app.agent.channel import ChannelDown, ChannelFirst, ChannelRefused, LiveChannel
from app.agent.client import AgentClient, AgentError, AnswerLost, Backoff, Unreachable
from app.agent.console import say
from app.agent.flows import (
    TERMINATE_GRACE_SECONDS,
    FlowNotRunnable,
    FlowProcess,
    FlowResult,
    find_program,
)
from app.agent.groups import is_the_same_group, stop_group
from app.agent.ledger import Ledger
from app.agent.operations import (
    CONFIRM_RUN,
    ClaimedRun,
    claim_next_run,
    claimed_run,
    complete_run,
    heartbeat,
)

T = TypeVar("T")

KEY_VARIABLE = "MG_MACHINE_KEY"
CLAIM_WAIT_SECONDS = 30
AGENT_RESTARTED = "agent restarted"
STOPPED_BEFORE_START = "the agent was stopped before it started the run"
CLAIM_ANSWER_LOST = "the agent lost the server's answer to its claim; the run never started"
KILLED_ON_STOP = "killed: the agent was told to stop twice"
CONFIRM_ANSWER_LOST = (
    "the agent lost the server's answer to its confirmation; the run never started"
)
# The WebSocket upgrade refused this many times in a row (a proxy that does not pass
# WebSockets) before the agent ever opened its channel: it works over HTTP long polls.
FALLBACK_AFTER = 3
# Another agent process holds the machine's channel: it may be this host's own earlier
# agent whose socket the server has not yet seen die (its pings time out within 40 s).
# Retried this long, then the agent gives up (exit 1): a machine runs one agent.
REFUSED_GIVE_UP_SECONDS = 60.0


class _Stopped(Exception):
    """A stop was requested while the agent waited for the server."""


class StopRequest:
    """How insistently the agent was told to stop: once lets a flow finish, twice kills it."""

    def __init__(self) -> None:
        self.count = 0
        self.requested = asyncio.Event()
        self.kill = asyncio.Event()

    def escalate(self) -> int:
        """Record one more request (Ctrl-C, SIGTERM); returns how many there were."""
        self.count += 1
        self.requested.set()
        if self.count >= 2:
            self.kill.set()
        return self.count


@dataclass
class _Held:
    """The run the agent is executing, and whether the server has ended it meanwhile."""

    run: ClaimedRun
    # When the claim answered: a heartbeat sent before then cannot know of the run.
    since: float
    ended_on_server: asyncio.Event = field(default_factory=asyncio.Event)


def flow_environment(run: ClaimedRun) -> dict[str, str]:
    """The flow's environment: the agent's, without the machine key, plus the run's ids."""
    env = {name: value for name, value in os.environ.items() if name != KEY_VARIABLE}
    env.update(MG_RUN_ID=run.id, MG_FLOW_NAME=run.flow_name)
    return env


class Agent:
    """One machine's agent: works the machine's queue until told to stop."""

    def __init__(
        self,
        client: AgentClient,
        flows_dir: Path,
        ledger: Ledger,
        stop: StopRequest,
        heartbeat_seconds: float,
    ) -> None:
        self.http = client
        # Operations go on the channel while it is open (channel mode), else over HTTP.
        self.client: AgentClient | ChannelFirst = client
        self.key = ""
        self.use_channel = False
        self.agent_id = uuid.uuid4().hex  # this process: its channel is its own
        self.flows_dir = flows_dir
        self.ledger = ledger
        self.stop = stop
        self.heartbeat_seconds = heartbeat_seconds
        self._held: _Held | None = None
        self._running: asyncio.Task[None] | None = None
        self._confirming: str | None = None  # a confirmation sent, its answer not yet in
        self._status: str | None = None
        self._ready_once = False

    def use_live_channel(self, key: str, channel: bool = True) -> None:
        """Hold the live channel with this machine key (else: HTTP long polls only)."""
        self.key, self.use_channel = key, channel
        self.client = ChannelFirst(self.http) if channel else self.http

    async def run(self) -> None:
        """Stop and report what a previous start left, then work until told to stop."""
        await self._stop_leftover_flow()
        if self.use_channel:
            await self._alongside_heartbeats(self._work_on_channel())
        elif await self._start_over_http():
            await self._alongside_heartbeats(self._work())
        say("stopped")

    async def _start_over_http(self) -> bool:
        """The first heartbeat: say what machine this is, fail a run a previous agent left;
        False when a stop came first."""
        try:
            machine = await self._unless_stopped(heartbeat(self.http))
        except _Stopped:
            return False
        self._status = machine.status
        say(
            f"started: machine {machine.name} ({machine.id}) is {machine.status};"
            f" server {self.http.url} (HTTP long polling); flows from {self.flows_dir}"
        )
        if machine.current_run_id is not None:
            # Desktop flows are not idempotent: a run cut short by a restart is never re-run.
            await self._fail_leftover(machine.current_run_id, AGENT_RESTARTED)
        return True

    async def _work_on_channel(self) -> None:
        """Hold the live channel, reopening it when it drops; fall back to HTTP long polls
        when the WebSocket upgrade is refused again and again before it ever opened."""
        assert isinstance(self.client, ChannelFirst)
        backoff, refused, opened = Backoff(), 0, False
        loop = asyncio.get_running_loop()
        taken_since: float | None = None
        while not self.stop.requested.is_set():
            try:
                live = await self._unless_stopped(
                    LiveChannel.open(self.http.url, self.key, self.agent_id)
                )
            except _Stopped:
                break
            except ChannelDown as down:
                refused = refused + 1 if down.upgrade_refused and not opened else 0
                if refused >= FALLBACK_AFTER:
                    say(f"WebSockets refused ({down}): falling back to HTTP long polling")
                    self.client = self.http
                    if self._ready_once or await self._start_over_http():
                        await self._work()
                    return
                delay = backoff.next_delay()
                say(f"reconnecting to {self.http.url} in {delay:.1f} s ({down})")
                try:
                    await self._unless_stopped(asyncio.sleep(delay))
                except _Stopped:
                    break
                continue
            opened = True
            self.client.live = live
            try:
                await self._serve(live)
            except ChannelRefused as taken:
                now = loop.time()
                if taken_since is None:
                    taken_since = now
                    say(f"{taken}; retrying for {REFUSED_GIVE_UP_SECONDS:.0f} s")
                if now - taken_since >= REFUSED_GIVE_UP_SECONDS:
                    raise
                with contextlib.suppress(_Stopped):
                    await self._unless_stopped(asyncio.sleep(backoff.next_delay()))
                continue
            except ChannelDown as down:
                if not self.stop.requested.is_set():
                    say(f"lost the channel ({down}): reconnecting")
            finally:
                self.client.live = None
                await live.close()
            backoff, taken_since = Backoff(), None
        await self._finish_running()

    def _busy(self) -> bool:
        return self._running is not None and not self._running.done()

    async def _finish_running(self) -> None:
        """Wait for the flow that runs (a second stop kills it); its errors are raised."""
        running, self._running = self._running, None
        if running is not None:
            await running

    async def _serve(self, live: LiveChannel) -> None:
        """Handle the channel's messages until it drops, or a stop is asked for and no
        flow runs."""
        while not (self.stop.requested.is_set() and not self._busy()):
            getter = asyncio.ensure_future(live.next_message())
            other: asyncio.Future[Any] = (
                asyncio.ensure_future(asyncio.shield(self._running))
                if self._running is not None and self._busy()
                else asyncio.ensure_future(self.stop.requested.wait())
            )
            try:
                await asyncio.wait({getter, other}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                other.cancel()
                if not getter.done():
                    getter.cancel()
                await asyncio.gather(getter, other, return_exceptions=True)
            if self._running is not None and self._running.done():
                await self._finish_running()  # its error, if any, stops the agent
            if getter.cancelled():
                continue
            message = getter.result()
            kind = message["kind"]
            if kind == "READY":
                await self._on_ready(message)
            elif kind == "RUN":
                await self._on_offer(live, message)
            elif kind == "RUN_ENDED":
                held = self._held
                # An offer withdrawn (`run` null) is never a run this agent confirmed: a
                # stale notice, its run offered again and confirmed meanwhile.
                if held is not None and held.run.id == message["runId"] and message["run"]:
                    held.ended_on_server.set()

    async def _on_ready(self, message: dict[str, Any]) -> None:
        """The channel (re)opened: what the machine holds now."""
        machine, current = message["machine"], message["runId"]
        first, self._ready_once = not self._ready_once, True
        if first:
            self._status = machine["status"]
            say(
                f"started: machine {machine['name']} ({machine['id']}) is {machine['status']};"
                f" server {self.http.url} (live channel); flows from {self.flows_dir}"
            )
        else:
            say(f"reconnected to {self.http.url}")
        if self._confirming is not None:
            lost, self._confirming = self._confirming, None
            if current == lost:
                # Its confirmation took effect but the answer never came: not started.
                await self._fail_leftover(lost, CONFIRM_ANSWER_LOST)
                return
        held = self._held
        if held is not None:
            if current != held.run.id:
                held.ended_on_server.set()  # ended while the channel was down
        elif current is not None:
            if first:
                # Desktop flows are not idempotent: a run cut short by a restart is never re-run.
                await self._fail_leftover(current, AGENT_RESTARTED)
            else:
                say(f"machine holds run {current}, which this agent did not start")

    async def _on_offer(self, live: LiveChannel, message: dict[str, Any]) -> None:
        """A run offered: confirm it, and only once confirmed, start its flow."""
        run_id = message["runId"]
        if self.stop.requested.is_set() or self._busy() or message["run"] is None:
            return  # not confirmed: it returns to the queue when the channel closes
        self._confirming = run_id
        payload = (await live.call(CONFIRM_RUN, {"id": run_id}))["confirmRun"]
        self._confirming = None
        if payload["errors"]:
            error = payload["errors"][0]
            say(f"run {run_id} not started: {error['code']}: {error['message']}")
            return
        run = claimed_run(message["run"])
        self._held = _Held(run, asyncio.get_running_loop().time())
        self._running = asyncio.create_task(self._execute(run, self._held))

    async def _stop_leftover_flow(self) -> None:
        """Stop the flow a killed agent left running, before talking to the server: the
        service no longer counts it as running once this agent reports the run."""
        leftover = self.ledger.leftover()
        if leftover is None:
            return
        if is_the_same_group(leftover.group, leftover.leader_start, leftover.boot):
            say(
                f"stopping the flow of run {leftover.run_id} that the previous agent left"
                f" running (process group {leftover.group})"
            )
            if not await stop_group(leftover.group, TERMINATE_GRACE_SECONDS):
                raise AgentError(
                    f"process group {leftover.group} (the flow of run {leftover.run_id}) did"
                    " not stop, even killed: the agent runs no flow beside it"
                )
            say(f"stopped the flow of run {leftover.run_id}")
        self.ledger.clear()

    async def _work(self) -> None:
        lost_answers = Backoff()
        try:
            while not self.stop.requested.is_set():
                try:
                    run = await self._unless_stopped(
                        claim_next_run(self.client, CLAIM_WAIT_SECONDS)
                    )
                except AnswerLost as error:
                    say(f"lost the answer to a claim ({error}): checking for a run granted by it")
                    await self._unless_stopped(asyncio.sleep(lost_answers.next_delay()))
                    await self._unless_stopped(self._fail_unstarted_run(CLAIM_ANSWER_LOST))
                    continue
                lost_answers = Backoff()
                if run is not None:
                    await self._execute(run)
        except _Stopped:
            await self._fail_unstarted_run(STOPPED_BEFORE_START, retry=False)

    async def _unless_stopped(self, work: Awaitable[T]) -> T:
        """The result of `work`; _Stopped, with `work` cancelled, if a stop comes first."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.create_task(self.stop.requested.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise _Stopped
        return task.result()

    async def _alongside_heartbeats(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` while heartbeating; a heartbeat's fatal error stops the work."""
        working = asyncio.create_task(work)
        beating = asyncio.create_task(self._keep_heartbeating())
        try:
            await asyncio.wait({working, beating}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (working, beating):
                task.cancel()
            await asyncio.gather(working, beating, return_exceptions=True)
        for task in (beating, working):
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error

    async def _keep_heartbeating(self) -> None:
        """Heartbeat every few seconds, and notice runs the server ended (cancelled)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            sent = loop.time()
            machine = await heartbeat(self.client)
            if machine.status != self._status:
                self._status = machine.status
                say(f"machine {machine.name} is {machine.status}")
            held = self._held
            if held is not None and sent > held.since and machine.current_run_id != held.run.id:
                held.ended_on_server.set()

    async def _execute(self, run: ClaimedRun, held: _Held | None = None) -> None:
        held = self._held = held or _Held(run, asyncio.get_running_loop().time())
        say(f"claimed run {run.id} flow {run.flow_name} priority {run.priority}")
        try:
            program = find_program(self.flows_dir, run.flow_name)
            process = await FlowProcess.start(program, run.inputs, flow_environment(run))
        except FlowNotRunnable as error:
            self._held = None
            await self._report(run, FlowResult(False, None, str(error)))
            return
        try:
            # At once: only an agent killed in the instant between the program's start and
            # this line (a few event-loop steps) leaves a flow the next agent cannot find.
            self.ledger.record(run.id, process.pid)
            result = await self._supervise(held, process)
        finally:
            self._held = None
            process.kill()  # nothing of a flow outlives its run
            self.ledger.clear()
        await self._report(run, result)

    async def _supervise(self, held: _Held, process: FlowProcess) -> FlowResult:
        """The flow's result; stopped early if the server ends the run or on a second stop."""
        exited = asyncio.create_task(process.wait())
        ended = asyncio.create_task(held.ended_on_server.wait())
        killed = asyncio.create_task(self.stop.kill.wait())
        try:
            done, _ = await asyncio.wait(
                {exited, ended, killed}, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            exited.cancel()
            raise
        finally:
            ended.cancel()
            killed.cancel()
        if exited in done:
            return exited.result()
        if ended in done:
            # Reported all the same: the server's refusal says how the run ended.
            say(f"run {held.run.id} was ended on the server: stopping its flow")
            await process.terminate()
            return await exited
        say(f"killing the flow of run {held.run.id}")
        await process.terminate()
        result = await exited
        return FlowResult(False, result.output, f"{KILLED_ON_STOP} ({result.message})")

    async def _report(self, run: ClaimedRun, result: FlowResult) -> None:
        outcome = "SUCCEEDED" if result.succeeded else "FAILED"
        refusal = await complete_run(self.client, run.id, outcome, result.output, result.message)
        if refusal is not None and refusal.code == "VALIDATION":
            note = f"output not accepted by the server ({refusal.message})"
            message = f"{result.message}; {note}" if result.message else note
            refusal = await complete_run(self.client, run.id, outcome, None, message)
        if refusal is None:
            because = f": {result.message}" if result.message else ""
            say(f"finished run {run.id} {outcome}{because}")
        elif refusal.code == "RUN_NOT_ACTIVE":
            say(f"finished run {run.id}: already ended on the server ({refusal.message})")
        else:
            say(f"finished run {run.id}: report refused ({refusal.code}: {refusal.message})")

    async def _fail_leftover(self, run_id: str, reason: str) -> None:
        refusal = await complete_run(self.client, run_id, "FAILED", None, reason)
        if refusal is None:
            say(f"finished run {run_id} FAILED: {reason} (desktop flows are never re-run)")
        else:
            say(f"run {run_id}: could not report it failed ({refusal.code}: {refusal.message})")

    async def _fail_unstarted_run(self, reason: str, *, retry: bool = True) -> None:
        """Fail a run the server gave this machine that never started (its claim got no answer)."""
        try:
            machine = await heartbeat(self.client, retry=retry)
        except Unreachable:
            return  # the next start of the agent reports any such run
        if machine.current_run_id is not None:
            await self._fail_leftover(machine.current_run_id, reason)
