"""The machine agent's parts without a server: URLs, backoff, flows, retries, lost answers."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.agent.client import AgentClient, AnswerLost, Backoff, Unauthorized, graphql_url
from app.agent.flows import (
    OUTPUT_LIMIT_BYTES,
    FlowNotRunnable,
    failure_message,
    find_program,
    output_of,
)
from app.agent.ledger import Ledger
from app.agent.worker import CLAIM_ANSWER_LOST, Agent, StopRequest

URL = "http://agent.test/graphql"
Handler = Callable[[httpx.Request], httpx.Response]


def _answer(data: dict[str, Any], status: int = 200) -> httpx.Response:
    return httpx.Response(status, json={"data": data})


def _call(handler: Handler, **options: Any) -> dict[str, Any]:
    async def call() -> dict[str, Any]:
        async with AgentClient(URL, "mgk_key", httpx.MockTransport(handler)) as client:
            return await client.call("mutation ClaimNextRun { x }", **options)

    return asyncio.run(call())


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/graphql"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/graphql"),
        ("https://mg.example.com/graphql", "https://mg.example.com/graphql"),
        (" https://mg.example.com/graphql/ ", "https://mg.example.com/graphql"),
    ],
)
def test_the_server_url_may_omit_the_graphql_suffix(given: str, expected: str) -> None:
    assert graphql_url(given) == expected


def test_a_server_url_without_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        graphql_url("127.0.0.1:8000")


def test_backoff_doubles_from_a_fifth_of_a_second_to_ten_seconds_with_jitter() -> None:
    backoff = Backoff()
    ceilings = [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
    for ceiling in ceilings:
        assert ceiling / 2 <= backoff.next_delay() <= ceiling


@pytest.mark.parametrize("name", ["", ".", "..", "../escape", "sub/flow", "/bin/sh", "a\\b"])
def test_a_flow_name_must_be_a_file_name_in_the_flows_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(FlowNotRunnable, match="not a file name in the flows folder"):
        find_program(tmp_path, name)


def test_a_flow_must_be_an_executable_file_and_each_failure_says_which(tmp_path: Path) -> None:
    (tmp_path / "script").write_text("#!/bin/sh\n")
    (tmp_path / "folder").mkdir()
    script = tmp_path / "script"
    said = {
        "missing": f"no program named 'missing' in {tmp_path}",
        "script": f"{script} is not executable: make it so (chmod +x {script})",
        "folder": f"{tmp_path / 'folder'} is not a file: a flow is a program file",
    }
    for name, message in said.items():
        with pytest.raises(FlowNotRunnable) as refused:
            find_program(tmp_path, name)
        assert str(refused.value) == message
    (tmp_path / "script").chmod(0o755)
    assert find_program(tmp_path, "script") == tmp_path / "script"


def test_the_output_is_the_json_on_stdout_else_an_excerpt_of_the_text() -> None:
    assert output_of('{"rows": 42}\n', complete=True) == {"rows": 42}
    assert output_of("  \n", complete=True) is None
    assert output_of("done\n", complete=True) == {"stdout": "done\n"}
    assert output_of("NaN", complete=True) == {"stdout": "NaN"}
    assert output_of('{"rows": 42}', complete=False) == {"stdout": '{"rows": 42}…'}
    huge = json.dumps(["x" * 100] * (OUTPUT_LIMIT_BYTES // 100))
    excerpt = output_of(huge, complete=True)["stdout"]
    assert excerpt.endswith("…") and len(excerpt) < 5000


def test_a_failure_says_the_exit_status_and_the_end_of_stderr() -> None:
    assert failure_message(3, "") == "exit code 3"
    assert (
        failure_message(-signal.SIGTERM, "Traceback\nboom\n")
        == "killed by SIGTERM: Traceback\nboom"
    )
    assert failure_message(1, "x" * 2000) == "exit code 1: " + "x" * 500


def test_server_errors_are_retried_until_the_server_answers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    statuses = iter([503, 502, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        return _answer({"ok": True}, next(statuses))

    assert _call(handler) == {"ok": True}
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3
    assert "reconnecting to http://agent.test/graphql in" in printed[0]
    assert "(HTTP 503)" in printed[0] and "(HTTP 502)" in printed[1]
    assert printed[2].endswith("reconnected to http://agent.test/graphql")


def test_a_refused_key_is_not_retried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer mgk_key"
        return httpx.Response(401, json={"errors": [{"message": "no"}]})

    with pytest.raises(Unauthorized, match="refused the machine key"):
        _call(handler)


def test_a_claim_that_may_have_reached_the_server_is_not_sent_again() -> None:
    attempts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append("sent")
        if len(attempts) == 1:  # never reached the server: safe to send again
            raise httpx.ConnectError("refused", request=request)
        raise httpx.ReadError("the server went away", request=request)

    with pytest.raises(AnswerLost, match="ReadError"):
        _call(handler, resend=False)
    assert len(attempts) == 2


def test_a_run_granted_by_a_claim_whose_answer_was_lost_is_failed_not_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held: list[str] = []
    reports: list[dict[str, Any]] = []
    claims: list[str] = []

    async def work() -> None:
        stop = StopRequest()

        def handler(request: httpx.Request) -> httpx.Response:
            body = json.loads(request.content)
            if "heartbeat" in body["query"]:
                current = {"id": held[0]} if held else None
                machine = {"id": "m1", "name": "VM", "status": "ONLINE", "currentRun": current}
                return _answer({"heartbeat": {"machine": machine, "errors": []}})
            if "claimNextRun" in body["query"]:
                claims.append("claim")
                if len(claims) == 1:  # granted, then the answer is lost
                    held.append("run-1")
                    raise httpx.RemoteProtocolError("server disconnected", request=request)
                stop.escalate()
                return _answer({"claimNextRun": {"run": None, "errors": []}})
            reports.append(body["variables"])
            held.clear()
            return _answer({"completeRun": {"run": {"id": "run-1"}, "errors": []}})

        async with AgentClient(URL, "mgk_key", httpx.MockTransport(handler)) as client:
            await Agent(client, tmp_path, Ledger(tmp_path), stop, heartbeat_seconds=60).run()

    asyncio.run(work())

    assert reports == [
        {"id": "run-1", "outcome": "FAILED", "output": None, "message": CLAIM_ANSWER_LOST}
    ]
    assert len(claims) == 2
    out = capsys.readouterr().out
    assert "lost the answer to a claim (RemoteProtocolError: server disconnected)" in out
    assert f"finished run run-1 FAILED: {CLAIM_ANSWER_LOST}" in out
    assert out.splitlines()[-1].endswith(" stopped")
