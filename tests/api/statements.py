"""Counting the SQL statements the live server sends while one query runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from tests.api.conftest import Account, Api
from tests.server import LiveServer


class StatementLog:
    """Every statement the server's engine sends while one query runs."""

    def __init__(self, server: LiveServer, query: str) -> None:
        self._engine = server.state.db.engine.sync_engine
        self._query = query
        self._lock = threading.Lock()
        self.statements: list[str] = []

    def _record(self, *args: Any) -> None:
        statement = args[2]
        with self._lock:
            self.statements.append(" ".join(str(statement).split()))

    @contextmanager
    def watch(self) -> Iterator[None]:
        """Record every statement sent while the block runs, and only those."""
        with self._lock:
            self.statements = []
        event.listen(self._engine, "before_cursor_execute", self._record)
        try:
            yield
        finally:
            event.remove(self._engine, "before_cursor_execute", self._record)

    def count(self, api: Api, variables: dict[str, Any], viewer: Account) -> tuple[int, Any]:
        """Run the query once: how many statements it cost (BEGINs included), and its data."""
        with self.watch():
            data = api.data(self._query, variables, as_=viewer)
        with self._lock:
            return len(self.statements), data

    @property
    def queries(self) -> list[str]:
        """The statements of the last query that are not transaction control."""
        with self._lock:
            return [s for s in self.statements if s.split()[0].upper() != "BEGIN"]
