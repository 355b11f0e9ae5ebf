"""Who a bearer token stands for: checked for every HTTP request and every operation
on a WebSocket, so a deactivated user or an expired token stops working at once."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.db.models import Machine
from app.domain.caller import MachineAgent, Principal
from app.domain.clock import as_utc
from app.domain.identity import Refusal, authenticate, read_authorization
from app.domain.machines import touch
from app.state import AppState

# An agent's calls within this long of the last recorded one are not written again.
TOUCH_INTERVAL = timedelta(seconds=1)


async def principal_for(state: AppState, authorization: str | None) -> Principal | Refusal:
    """The principal of an `Authorization` value now, or why there is none (missing,
    malformed, expired, signed by another key, naming a user that is unknown or
    deactivated, or a machine that is gone). An agent's call is a heartbeat."""
    token = read_authorization(authorization)
    if isinstance(token, Refusal):
        return token
    async with state.db.read() as session:
        principal = await authenticate(session, state.settings, token)
    if isinstance(principal, MachineAgent):
        now = state.services.clock.now()
        if _heard_from_lately(principal.machine, now):
            return principal
        async with state.transaction() as session:
            machine = await touch(
                session, principal.machine.id, now, state.settings.machine_timeout
            )
        return MachineAgent(machine) if machine is not None else Refusal.UNKNOWN_MACHINE
    return principal


def _heard_from_lately(machine: Machine, now: datetime) -> bool:
    """Whether the machine's last call was recorded under TOUCH_INTERVAL ago.

    Every agent call is a heartbeat, but a machine goes offline only after
    MG_MACHINE_TIMEOUT (seconds), so recording at most one call a second per machine
    changes no status and spares a write transaction on most calls of a busy agent.
    """
    seen, left = machine.last_seen_at, machine.left_at
    if seen is None or (left is not None and as_utc(left) >= as_utc(seen)):
        return False  # never seen, or its channel closed since: a call brings it back
    return timedelta(0) <= now - as_utc(seen) < TOUCH_INTERVAL
