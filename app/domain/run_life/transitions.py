"""The run's life as one table: (state, event) -> state.

Every change of a run's status goes through this table: rules that change a run they
hold as an object call `apply`, and the statements that change runs in bulk or in one
guarded UPDATE (app/domain/run_life/statements.py) take their WHERE and their new status
from it. A pair missing from the table is not allowed: `apply` refuses it and no
statement is built for it. `tests/unit/test_run_transitions.py` walks every pair.

States are the API's statuses plus one: OFFERED, a run pushed to its machine's agent on
the live channel and not yet confirmed by it. The API shows it as RUNNING (the machine
holds it); the database tells the two apart by `confirmed_at` (null while offered). An
agent starts a flow only once its confirmation was accepted, so an offer that is never
confirmed provably never started, and may go back to the queue (WITHDRAW).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType

from app.domain.enums import ErrorCode, RunStatus
from app.domain.errors import DomainError


class RunState(Enum):
    QUEUED = "QUEUED"
    OFFERED = "OFFERED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def status(self) -> RunStatus:
        """The status the API shows (an offered run is held by its machine: RUNNING)."""
        return RunStatus.RUNNING if self is RunState.OFFERED else RunStatus(self.value)

    @property
    def final(self) -> bool:
        """Whether the run has ended (no event leaves a final state)."""
        return self in FINAL_STATES


class RunEvent(Enum):
    CLAIM = "CLAIM"  # an agent's claimNextRun took it: handed over in the answer
    OFFER = "OFFER"  # pushed to the machine's agent on its channel, to confirm
    CONFIRM = "CONFIRM"  # the agent confirmed the offer: it may start the flow now
    WITHDRAW = "WITHDRAW"  # an offer not confirmed in time, or whose channel closed
    SUCCEED = "SUCCEED"  # the holder reports success
    FAIL = "FAIL"  # the holder reports failure
    CANCEL = "CANCEL"  # cancelRun
    REPRIORITISE = "REPRIORITISE"  # setRunPriority
    QUEUE_TIMEOUT = "QUEUE_TIMEOUT"  # queued longer than MG_MAX_QUEUE_SECONDS
    RUN_TIMEOUT = "RUN_TIMEOUT"  # held longer than MG_MAX_RUN_SECONDS
    MACHINE_LOST = "MACHINE_LOST"  # its machine silent for MG_MACHINE_TIMEOUT
    GROUP_DELETED = "GROUP_DELETED"  # its group was deleted
    MACHINE_DELETED = "MACHINE_DELETED"  # its machine (holder or target) was deleted


Q, OF, R = RunState.QUEUED, RunState.OFFERED, RunState.RUNNING
E = RunEvent

TRANSITIONS: Mapping[tuple[RunState, RunEvent], RunState] = MappingProxyType(
    {
        (Q, E.CLAIM): R,
        (Q, E.OFFER): OF,
        (OF, E.CONFIRM): R,
        (OF, E.WITHDRAW): Q,
        (R, E.SUCCEED): RunState.SUCCEEDED,
        (R, E.FAIL): RunState.FAILED,
        (Q, E.CANCEL): RunState.CANCELLED,
        (OF, E.CANCEL): RunState.CANCELLED,
        (R, E.CANCEL): RunState.CANCELLED,
        (Q, E.REPRIORITISE): Q,
        (Q, E.QUEUE_TIMEOUT): RunState.FAILED,
        (OF, E.RUN_TIMEOUT): RunState.TIMED_OUT,
        (R, E.RUN_TIMEOUT): RunState.TIMED_OUT,
        # An offer never started: it is withdrawn (WITHDRAW) long before its machine is lost.
        (R, E.MACHINE_LOST): RunState.FAILED,
        (Q, E.GROUP_DELETED): RunState.CANCELLED,
        (Q, E.MACHINE_DELETED): RunState.CANCELLED,
        (OF, E.MACHINE_DELETED): RunState.FAILED,
        (R, E.MACHINE_DELETED): RunState.FAILED,
    }
)

FINAL_STATES = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.TIMED_OUT}
)
FINAL = frozenset(state.status for state in FINAL_STATES)


def sources(event: RunEvent) -> frozenset[RunState]:
    """The states `event` applies to."""
    return frozenset(state for state, each in TRANSITIONS if each is event)


def targets(event: RunEvent) -> frozenset[RunState]:
    """The states `event` leads to."""
    return frozenset(to for (_state, each), to in TRANSITIONS.items() if each is event)


def target(event: RunEvent) -> RunState:
    """The one state `event` leads to (for a statement that sets it in one UPDATE)."""
    (only,) = targets(event)
    return only


# What a request on a run that has ended means, said after why it changes nothing.
_ENDED_MEANS = {
    RunEvent.CANCEL: "there is nothing left to cancel",
    RunEvent.REPRIORITISE: "its priority no longer matters",
    RunEvent.CONFIRM: "do not start its flow",
    RunEvent.SUCCEED: "this report changes nothing (stop its flow, if it still runs)",
    RunEvent.FAIL: "this report changes nothing (stop its flow, if it still runs)",
}


def why_not(state: RunState, event: RunEvent, failure_reason: str | None = None) -> DomainError:
    """Why `event` cannot happen to a run in `state` (which ended with `failure_reason`,
    if it failed), in the API's terms."""
    if state.final:
        how = f"{state.status.value}, {failure_reason}" if failure_reason else state.status.value
        means = _ENDED_MEANS.get(event, "nothing changed")
        return DomainError(
            ErrorCode.RUN_NOT_ACTIVE, f"the run has ended already ({how}): {means}", "id"
        )
    if event is RunEvent.REPRIORITISE:
        return DomainError(
            ErrorCode.CONFLICT,
            "the run is running already: only a queued run's priority can change",
            "id",
        )
    return DomainError(
        ErrorCode.CONFLICT, f"a {state.status.value} run cannot {event.value.lower()}", "id"
    )


def step(state: RunState, event: RunEvent, failure_reason: str | None = None) -> RunState:
    """The state after `event`; the API's error when the table has no such pair."""
    following = TRANSITIONS.get((state, event))
    if following is None:
        raise why_not(state, event, failure_reason)
    return following
