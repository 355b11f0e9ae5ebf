"""The run's life: every (state, event) pair's outcome, walked one by one.

The expected table below is written out as the spec reads (app/domain/run_life is built
from its own table): a pair missing here must be refused, with the API's error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import product

import pytest

from app.db.models import Run
from app.domain.enums import ErrorCode, RunStatus
from app.domain.errors import DomainError
from app.domain.run_life import statements
from app.domain.run_life.changes import apply, state_of
from app.domain.run_life.transitions import TRANSITIONS, RunEvent, RunState, step

S, E = RunState, RunEvent
EXPECTED = {
    # Handing over: over HTTP at once; on the channel, offered until the agent confirms.
    (S.QUEUED, E.CLAIM): S.RUNNING,
    (S.QUEUED, E.OFFER): S.OFFERED,
    (S.OFFERED, E.CONFIRM): S.RUNNING,
    # An offer never confirmed never started: back to the queue.
    (S.OFFERED, E.WITHDRAW): S.QUEUED,
    (S.RUNNING, E.SUCCEED): S.SUCCEEDED,
    (S.RUNNING, E.FAIL): S.FAILED,
    (S.QUEUED, E.CANCEL): S.CANCELLED,
    (S.OFFERED, E.CANCEL): S.CANCELLED,
    (S.RUNNING, E.CANCEL): S.CANCELLED,
    (S.QUEUED, E.REPRIORITISE): S.QUEUED,
    (S.QUEUED, E.QUEUE_TIMEOUT): S.FAILED,
    (S.OFFERED, E.RUN_TIMEOUT): S.TIMED_OUT,
    (S.RUNNING, E.RUN_TIMEOUT): S.TIMED_OUT,
    (S.RUNNING, E.MACHINE_LOST): S.FAILED,
    (S.QUEUED, E.GROUP_DELETED): S.CANCELLED,
    (S.QUEUED, E.MACHINE_DELETED): S.CANCELLED,
    (S.OFFERED, E.MACHINE_DELETED): S.FAILED,
    (S.RUNNING, E.MACHINE_DELETED): S.FAILED,
}
FINAL = {S.SUCCEEDED, S.FAILED, S.CANCELLED, S.TIMED_OUT}
NOW = datetime(2027, 1, 10, 12, 0, tzinfo=UTC)


def test_the_table_is_the_spec() -> None:
    assert dict(TRANSITIONS) == EXPECTED


def _run_in(state: RunState) -> Run:
    run = Run(flow_name="f", started_by_id="u", enqueued_at=NOW, status=state.status.value)
    if state is S.RUNNING:
        run.confirmed_at = NOW
    return run


@pytest.mark.parametrize(("state", "event"), list(product(RunState, RunEvent)))
def test_every_pair(state: RunState, event: RunEvent) -> None:
    run = _run_in(state)
    assert state_of(run) is state
    expected = EXPECTED.get((state, event))
    if expected is None:
        with pytest.raises(DomainError) as refused:
            step(state, event)
        # Ended runs answer RUN_NOT_ACTIVE; others CONFLICT (e.g. re-prioritising a running run).
        code = ErrorCode.RUN_NOT_ACTIVE if state in FINAL else ErrorCode.CONFLICT
        assert refused.value.code is code
        with pytest.raises(DomainError):
            apply(run, event, "reason", NOW)
        assert run.status == state.status.value  # unchanged
        return
    assert step(state, event) is expected
    apply(run, event, "reason", NOW)
    assert RunStatus(run.status) is expected.status
    if expected in FINAL:
        assert (run.failure_reason, run.finished_at) == ("reason", NOW)
    else:
        assert run.finished_at is None


def test_an_offered_run_shows_running_and_final_states_end() -> None:
    assert S.OFFERED.status is RunStatus.RUNNING
    assert {state for state in RunState if state.final} == FINAL
    assert not any(state in FINAL for (state, _event) in TRANSITIONS)


@pytest.mark.parametrize(
    ("statement", "where", "sets"),
    [
        (statements.CLAIM, "runs.status = :status_1", "RUNNING"),
        (statements.OFFER, "runs.status = :status_1", "RUNNING"),
        (statements.CONFIRM, "runs.confirmed_at IS NULL", "RUNNING"),
        (statements.COMPLETE, "runs.confirmed_at IS NOT NULL", None),
        (statements.WITHDRAW_OFFERS_OF, "runs.confirmed_at IS NULL", "QUEUED"),
        (statements.WITHDRAW_STALE_OFFERS, "runs.confirmed_at IS NULL", "QUEUED"),
        (statements.QUEUED_TOO_LONG, "runs.status = :status_1", "FAILED"),
        (statements.RUNNING_TOO_LONG, "runs.status = :status_1", "TIMED_OUT"),
        (statements.MACHINE_LOST, "runs.confirmed_at IS NOT NULL", "FAILED"),
    ],
)
def test_statements_move_runs_along_the_table(
    statement: object, where: str, sets: str | None
) -> None:
    compiled = statement.compile()  # type: ignore[attr-defined]
    assert where in str(compiled)
    if sets is not None:
        assert sets in compiled.params.values()
