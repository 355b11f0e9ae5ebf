"""`machine-groups serve` stops promptly on SIGTERM, even while an agent long-polls."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import httpx

from app.main import SHUTDOWN_GRACE_SECONDS
from tests.processes import CLAIM, ServerProcess, graphql_request, premium_admin

SECRET = "shutdown-test-secret-0123456789abcdef0123456789"


def test_serve_stops_within_its_grace_period_while_an_agent_long_polls(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'mg.db'}", SECRET).start()
    assert server.process is not None
    try:
        with httpx.Client(timeout=90) as http:
            _machine_id, key = premium_admin(server, http).register_machine("poller")

            def long_poll() -> None:
                with contextlib.suppress(httpx.HTTPError):  # cut by the stop, as expected
                    http.post(server.url, **graphql_request(key, CLAIM, {"w": 60}))

            poll = threading.Thread(target=long_poll)
            poll.start()
            time.sleep(1.0)
            assert poll.is_alive()  # the claim is waiting for work

            began = time.monotonic()
            server.process.terminate()
            server.process.wait(timeout=SHUTDOWN_GRACE_SECONDS + 20)
            assert time.monotonic() - began < SHUTDOWN_GRACE_SECONDS + 5
            poll.join(timeout=10)
            assert not poll.is_alive()
    finally:
        server.kill()
