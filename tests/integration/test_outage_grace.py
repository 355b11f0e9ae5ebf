"""The lost-machine expiry across outages: time during which no server was up does not count.

Servers here are `AppState`s started and stopped on the test's own database, on one
ManualClock: a server that is stopped sweeps no more, as if killed. A sweep pass is
called by hand (`sweep(state)`), so the moments are exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col

from app.db.models import Machine, Run, new_id
from app.domain.clock import ManualClock
from app.domain.run_life.changes import MACHINE_LOST
from app.domain.users import user_by_name
from app.queue.sweeper import sweep
from app.queue.uptime import continuous_since
from app.settings import Settings
from app.state import AppState

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_service_is_up_since_the_start_of_the_unbroken_lives_that_reach_now() -> None:
    now = _at(100)
    assert continuous_since([(_at(0), now)], now) == _at(0)
    # Killed at 40, started again at 60: up since 60.
    assert continuous_since([(_at(0), _at(40)), (_at(60), now)], now) == _at(60)
    # Another server bridged the gap: no outage.
    lives = [(_at(0), _at(40)), (_at(30), _at(99)), (_at(60), now)]
    assert continuous_since(lives, now) == _at(0)
    # Lives that touch are unbroken; with no life up now, the service is up from now.
    assert continuous_since([(_at(0), _at(50)), (_at(50), now)], now) == _at(0)
    assert continuous_since([(_at(0), _at(99))], now) == now


class Service:
    """Servers on one database and one clock, and a machine running a run on it."""

    def __init__(self, settings: Settings, clock: ManualClock) -> None:
        self.settings = settings
        self.clock = clock
        self.timeout = settings.machine_timeout
        # Each server's last pass, by server id: a pass after one checks lost machines
        # only among those whose heartbeat expired since, as the running sweeper does.
        self._last_sweep: dict[str, datetime] = {}

    @asynccontextmanager
    async def server(self) -> AsyncIterator[AppState]:
        """A server started at the clock's time; stopped (it sweeps no more) on leaving."""
        state = AppState.build(self.settings, self.clock)
        await state.start()
        try:
            yield state
        finally:
            await state.stop()

    async def running_run(self, state: AppState) -> tuple[str, str]:
        """A machine seen now, and the run it runs: (machine id, run id)."""
        now = self.clock.now()
        async with state.db.write() as session:
            admin = await user_by_name(session, "admin")
            assert admin is not None
            machine = Machine(
                environment_id=state.default_environment_id,
                name="VM",
                name_key="vm",
                owner_id=admin.id,
                key_hash=new_id(),
                last_seen_at=now,
                created_at=now,
            )
            session.add(machine)
            run = Run(
                flow_name="invoices",
                status="RUNNING",
                target_machine_id=machine.id,
                machine_id=machine.id,
                started_by_id=admin.id,
                enqueued_at=now,
                started_at=now,
                confirmed_at=now,  # claimed over HTTP: handed over in the claim's answer
            )
            session.add(run)
        return machine.id, run.id

    async def heartbeat(self, state: AppState, machine_id: str) -> None:
        """The machine calls in now."""
        async with state.db.write() as session:
            await session.execute(
                update(Machine)
                .where(col(Machine.id) == machine_id)
                .values(last_seen_at=self.clock.now())
            )

    async def status(self, state: AppState, run_id: str) -> tuple[str, str | None]:
        """The run's (status, failure reason)."""
        async with state.db.read() as session:
            run = await session.get(Run, run_id)
            assert run is not None
            return run.status, run.failure_reason

    async def at(self, seconds: float, *sweepers: AppState) -> None:
        """Move the clock to T0 + `seconds`, then one sweep pass on each server given."""
        self.clock.advance((_at(seconds) - self.clock.now()).total_seconds())
        for state in sweepers:
            server_id = state.hub.server_id
            self._last_sweep[server_id] = await sweep(state.hub, self._last_sweep.get(server_id))


def _scenario(settings: Settings, steps: Callable[[Service], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(steps(Service(settings, ManualClock(T0))))


LOST = ("FAILED", MACHINE_LOST)
RUNNING = ("RUNNING", None)


def test_after_an_outage_a_machine_gets_the_timeout_from_the_servers_start(
    settings: Settings,
) -> None:
    async def steps(service: Service) -> None:
        timeout = service.timeout
        async with service.server() as first:
            _machine, run = await service.running_run(first)
            await service.at(1, first)
        # Down for ten timeouts; the machine, whose agent retries, is not back yet.
        restart = 10 * timeout
        await service.at(restart)
        async with service.server() as server:
            await service.at(restart + 1, server)
            assert await service.status(server, run) == RUNNING
            await service.at(restart + timeout, server)
            assert await service.status(server, run) == RUNNING  # exactly the timeout
            await service.at(restart + timeout + 1, server)
            assert await service.status(server, run) == LOST

            # A machine that reached the server after its start has the usual timeout.
            machine, run = await service.running_run(server)
            await service.at(restart + timeout + 5, server)
            await service.heartbeat(server, machine)
            await service.at(restart + 2 * timeout + 5, server)
            assert await service.status(server, run) == RUNNING
            await service.at(restart + 2 * timeout + 6, server)
            assert await service.status(server, run) == LOST

    _scenario(settings, steps)


def test_a_server_restarting_while_another_runs_is_no_outage(settings: Settings) -> None:
    async def steps(service: Service) -> None:
        timeout = service.timeout
        async with service.server() as a:
            async with service.server() as b:
                _machine, run = await service.running_run(a)
                await service.at(1, a, b)
            # B is down, A keeps sweeping; B starts again shortly before the timeout.
            await service.at(timeout - 1, a)
            async with service.server() as b_again:
                await service.at(timeout + 1, b_again)
                assert await service.status(b_again, run) == LOST

    _scenario(settings, steps)


def test_when_every_server_was_down_the_grace_runs_from_the_first_start(
    settings: Settings,
) -> None:
    async def steps(service: Service) -> None:
        timeout = service.timeout
        async with service.server() as a, service.server() as b:
            _machine, run = await service.running_run(a)
            await service.at(1, a, b)
        first_start = 5 * timeout
        await service.at(first_start)
        async with service.server() as a:
            await service.at(first_start + 3)
            async with service.server() as b:
                await service.at(first_start + timeout, a, b)
                assert await service.status(b, run) == RUNNING
                # B started 3 s after A: its own start gives the machine nothing more.
                await service.at(first_start + timeout + 1, b)
                assert await service.status(b, run) == LOST

    _scenario(settings, steps)


def test_passes_after_the_first_miss_no_machine_whose_heartbeat_expired_since(
    settings: Settings,
) -> None:
    """Machines last seen at different moments, swept every second and then once after a
    long stall: each run is lost at the first pass after its machine's timeout."""

    async def steps(service: Service) -> None:
        timeout = service.timeout
        async with service.server() as server:
            await service.at(1, server)
            runs = {}
            for offset in (0, 3, timeout // 2):
                await service.at(2 + offset, server)
                runs[2 + offset] = await service.running_run(server)
            for second in range(3, 3 + timeout + timeout // 2 + 1):
                await service.at(second, server)
                for seen, (_machine, run) in runs.items():
                    expected = LOST if second > seen + timeout else RUNNING
                    assert await service.status(server, run) == expected, (second, seen)
            # A sweeper that stalled for three timeouts still finds a machine lost meanwhile.
            now = 3 + timeout + timeout // 2
            _machine, run = await service.running_run(server)
            await service.at(now + 3 * timeout, server)
            assert await service.status(server, run) == LOST

    _scenario(settings, steps)
