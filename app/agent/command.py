"""`machine-groups agent`: run a machine agent until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from app.agent.client import AgentClient, AgentError, graphql_url
from app.agent.console import complain, say
from app.agent.ledger import AgentLock, AnotherAgent, Ledger, default_state_dir, key_folder
from app.agent.worker import KEY_VARIABLE, Agent, StopRequest

FORCED_EXIT = 130


def agent(
    server: Annotated[
        str,
        typer.Option(
            help="The server, with or without the /graphql suffix, e.g. http://127.0.0.1:8000."
        ),
    ],
    key: Annotated[
        str,
        typer.Option(
            envvar=KEY_VARIABLE,
            show_envvar=True,
            help="The machine key registerMachine returned (the environment variable keeps it"
            " out of the process list).",
        ),
    ],
    flows: Annotated[
        Path,
        typer.Option(
            exists=True,
            file_okay=False,
            resolve_path=True,
            help="The folder of flow programs: a run of flow NAME runs the executable"
            " FLOWS/NAME with the run's inputs as JSON on stdin; its stdout (JSON) is the output.",
        ),
    ],
    heartbeat_interval: Annotated[
        float,
        typer.Option(
            min=0.1,
            max=20.0,
            help="Seconds between heartbeats; a machine silent for MG_MACHINE_TIMEOUT (30 s)"
            " is offline and loses its running run.",
        ),
    ] = 5.0,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="MG_AGENT_STATE_DIR",
            show_envvar=True,
            file_okay=False,
            resolve_path=True,
            help="Where the agent keeps its lock and the record of the flow it runs, in a"
            " private folder per machine key (named by a hash of the key). Default:"
            " $XDG_STATE_HOME/machine-groups, else ~/.local/state/machine-groups.",
            show_default=False,
        ),
    ] = None,
    http: Annotated[
        bool,
        typer.Option(
            "--http",
            help="Long-poll over HTTP instead of holding the live channel (a WebSocket): for"
            " proxies that refuse WebSockets. Without it, the agent falls back to HTTP by"
            " itself when the WebSocket upgrade is refused three times in a row.",
        ),
    ] = False,
) -> None:
    """Run a machine agent: claim this machine's runs and run each flow as a local program.

    Ctrl-C (or SIGTERM) stops claiming and lets a running flow finish; a second one kills it.
    """
    try:
        url = graphql_url(server)
    except ValueError as error:
        complain(str(error))
        raise typer.Exit(code=2) from None
    try:
        folder = key_folder(state_dir or default_state_dir(), key)
        lock = AgentLock(folder)
    except (AnotherAgent, OSError) as error:
        complain(str(error))
        raise typer.Exit(code=1) from None
    try:
        code = asyncio.run(
            _serve(url, key, flows, Ledger(folder), heartbeat_interval, channel=not http)
        )
    finally:
        lock.release()
    raise typer.Exit(code=code)


async def _serve(
    url: str,
    key: str,
    flows_dir: Path,
    ledger: Ledger,
    heartbeat_seconds: float,
    *,
    channel: bool,
) -> int:
    """Run the agent with signal handlers; returns the exit code."""
    stop = StopRequest()
    main = asyncio.current_task()
    assert main is not None

    def on_signal(signum: signal.Signals) -> None:
        count = stop.escalate()
        if count == 1:
            say(f"stopping ({signum.name}): no new runs; a running flow finishes (again: kill it)")
        elif count == 2:
            say(f"stopping now ({signum.name}): a running flow is killed and reported FAILED")
        else:
            say(f"forced exit ({signum.name})")
            main.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    async with AgentClient(url, key) as client:
        try:
            agent = Agent(client, flows_dir, ledger, stop, heartbeat_seconds)
            agent.use_live_channel(key, channel)
            await agent.run()
        except AgentError as error:
            complain(str(error))
            return 1
        except asyncio.CancelledError:
            return FORCED_EXIT
    return 0
