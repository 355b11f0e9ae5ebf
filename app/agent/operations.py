"""The machine agent's three GraphQL operations, with typed answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from app.agent.client import AgentError

HEARTBEAT = """
mutation Heartbeat {
  heartbeat { machine { id name status currentRun { id } } errors { code message } }
}"""

CLAIM_NEXT_RUN = """
mutation ClaimNextRun($wait: Int!) {
  claimNextRun(waitSeconds: $wait) {
    run { id flowName inputs priority } errors { code message }
  }
}"""

COMPLETE_RUN = """
mutation CompleteRun($id: ID!, $outcome: RunOutcome!, $output: JSON, $message: String) {
  completeRun(id: $id, outcome: $outcome, output: $output, message: $message) {
    run { id status } errors { code message }
  }
}"""


CONFIRM_RUN = """
mutation ConfirmRun($id: ID!) {
  confirmRun(id: $id) { run { id status } errors { code message } }
}"""


class Calls(Protocol):
    """Sends one operation: over HTTP (app/agent/client.py), or on the channel first."""

    url: str

    async def call(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        wait_seconds: float = 0,
        retry: bool = True,
        resend: bool = True,
    ) -> dict[str, Any]:
        """The `data` of one operation."""
        ...


@dataclass(frozen=True)
class MachineState:
    """The machine as a heartbeat sees it."""

    id: str
    name: str
    status: str
    current_run_id: str | None


@dataclass(frozen=True)
class ClaimedRun:
    """A run the server gave this machine."""

    id: str
    flow_name: str
    inputs: Any
    priority: str


@dataclass(frozen=True)
class Refusal:
    """Why the server did not accept a report."""

    code: str
    message: str


def _refusals(payload: dict[str, Any]) -> list[Refusal]:
    return [Refusal(error["code"], error["message"]) for error in payload["errors"]]


def _explain(refusals: list[Refusal]) -> str:
    return "; ".join(f"{refusal.code}: {refusal.message}" for refusal in refusals)


async def heartbeat(client: Calls, *, retry: bool = True) -> MachineState:
    """Tell the server the machine is alive; learn its status and the run it holds."""
    payload = (await client.call(HEARTBEAT, retry=retry))["heartbeat"]
    machine = payload["machine"]
    if payload["errors"] or machine is None:
        raise AgentError(f"the server refused the heartbeat ({_explain(_refusals(payload))})")
    current = machine["currentRun"]
    return MachineState(
        machine["id"], machine["name"], machine["status"], current and current["id"]
    )


async def claim_next_run(client: Calls, wait_seconds: int) -> ClaimedRun | None:
    """The machine's next run, waiting up to `wait_seconds` for one; None if none came."""
    # Never resent: a claim sent again would not see a run granted by one whose answer was
    # lost (the machine is busy with it), so the caller gets AnswerLost and checks.
    variables = {"wait": wait_seconds}
    data = await client.call(CLAIM_NEXT_RUN, variables, wait_seconds=wait_seconds, resend=False)
    payload = data["claimNextRun"]
    if payload["errors"]:
        raise AgentError(f"the server refused to dispatch ({_explain(_refusals(payload))})")
    run = payload["run"]
    if run is None:
        return None
    return claimed_run(run)


async def complete_run(
    client: Calls, run_id: str, outcome: str, output: Any, message: str | None
) -> Refusal | None:
    """Report the end of a run; the server's refusal, if it did not accept it."""
    variables = {"id": run_id, "outcome": outcome, "output": output, "message": message}
    payload = (await client.call(COMPLETE_RUN, variables))["completeRun"]
    refusals = _refusals(payload)
    return refusals[0] if refusals else None


def claimed_run(run: dict[str, Any]) -> ClaimedRun:
    """A run as the API shows it (claimNextRun's, or the channel's RUN message)."""
    return ClaimedRun(run["id"], run["flowName"], run["inputs"], run["priority"])
