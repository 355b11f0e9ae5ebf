"""The deadline of the request being served, and how its work ends early.

A query or mutation runs `bounded` by MG_REQUEST_TIMEOUT (app/graphql/deadline.py). Past
the deadline, or once the database has no connection for it (ServiceBusy, raised by
app/db/engine.py), the request's task is cancelled, and so is every task doing database
work for it (a DataLoader reads in a task of its own): the request answers one error and
its statements stop. Waiting is not work: a long poll waits outside the deadline
(`waiting`). SQLite's statements run on the event loop's thread, where no cancellation
reaches them; its progress handler asks `past_deadline` instead (app/db/inline_sqlite.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar

log = logging.getLogger("app.deadline")


class RequestCut(Exception):
    """Why a request ended before its work was done, with what the client should do."""

    code: ClassVar[str]

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DeadlineExceeded(RequestCut):
    """The request's work took longer than MG_REQUEST_TIMEOUT."""

    code = "REQUEST_TIMEOUT"

    @classmethod
    def after(cls, seconds: float | None) -> DeadlineExceeded:
        """The error of a request stopped after `seconds` of work."""
        limit = f"its limit of {seconds:g} s" if seconds is not None else "its time limit"
        return cls(
            f"the request was stopped: its work took longer than {limit}."
            " Ask for less (smaller pages, fewer fields) or try again later"
        )


class ServiceBusy(RequestCut):
    """No database connection (or SQLite write lock) came free in time."""

    code = "SERVICE_BUSY"

    def __init__(self, message: str = "the service is busy: try again in a moment") -> None:
        super().__init__(message)


@dataclass(eq=False)
class _Scope:
    seconds: float
    ends_at: float  # on time.monotonic(), which SQLite's progress handler can read
    timeout: asyncio.Timeout | None = None
    workers: set[asyncio.Task[Any]] = field(default_factory=set)
    suspended: int = 0
    reason: RequestCut | None = None
    open: bool = True

    def arm(self) -> None:
        """Set the timer: now once given up, none while waiting, else the deadline."""
        if not self.open or self.timeout is None or self.timeout.expired():
            return
        now = asyncio.get_running_loop().time()
        if self.reason is not None:
            self.timeout.reschedule(now)
        elif self.suspended:
            self.timeout.reschedule(None)
        else:
            self.timeout.reschedule(now + max(0.0, self.ends_at - time.monotonic()))

    def cut(self) -> RequestCut:
        """What ended the request: the reason given, else the deadline."""
        return self.reason or DeadlineExceeded.after(self.seconds)


_current: ContextVar[_Scope | None] = ContextVar("request_deadline", default=None)


@asynccontextmanager
async def bounded(seconds: float) -> AsyncIterator[None]:
    """Run the block within `seconds` of work; past them, or given up, it is cancelled
    and the RequestCut saying why is raised (and logged, once)."""
    scope = _Scope(seconds, time.monotonic() + seconds)
    token = _current.set(scope)
    try:
        async with asyncio.timeout(seconds) as timeout:
            scope.timeout = timeout
            yield
    except TimeoutError:
        if not timeout.expired():
            raise  # a timeout of the block's own
        cut = scope.cut()
    except RequestCut as raised:  # the block let the error of its database work through
        cut = scope.reason or raised
    else:
        if scope.reason is None:
            return
        cut = scope.reason  # given up, but the block ended before the timer fired
    finally:
        scope.open = False
        _current.reset(token)
        # DataLoaders' reads still running for this request: nobody awaits them now.
        for task in scope.workers - {asyncio.current_task()}:
            task.cancel()
    raise _logged(cut) from None


def give_up(reason: RequestCut) -> RequestCut:
    """End the current request early (the first reason given stands); returns the error
    to raise where the reason was found. Outside a request, the reason is logged."""
    scope = _current.get()
    if scope is None:
        return _logged(reason)
    if scope.reason is None and scope.open:
        scope.reason = reason
        scope.arm()
    # A read still running for a request already answered: its request logged its line.
    return scope.reason or reason


def deadline_passed() -> RequestCut:
    """Give up the current request as too slow (a statement found its deadline passed)."""
    scope = _current.get()
    return give_up(DeadlineExceeded.after(scope.seconds if scope is not None else None))


def past_deadline() -> bool:
    """Whether the current request's work should stop now (False outside a request)."""
    scope = _current.get()
    if scope is None or not scope.open:
        return False
    return scope.reason is not None or (not scope.suspended and time.monotonic() >= scope.ends_at)


@contextmanager
def waiting() -> Iterator[None]:
    """Wait outside the deadline: the time spent in the block is added to it."""
    scope = _current.get()
    if scope is None:
        yield
        return
    began = time.monotonic()
    scope.suspended += 1
    scope.arm()
    try:
        yield
    finally:
        scope.suspended -= 1
        scope.ends_at += time.monotonic() - began
        scope.arm()


@contextmanager
def working() -> Iterator[None]:
    """Mark the current task as doing database work for the request, so that the
    request's end cancels it even when it is not the request's own task."""
    scope, task = _current.get(), asyncio.current_task()
    if scope is None or task is None:
        yield
        return
    scope.workers.add(task)
    try:
        yield
    finally:
        scope.workers.discard(task)


def _logged(cut: RequestCut) -> RequestCut:
    # One line per request: the fields that met the same cut are answered by one error.
    log.warning("request stopped (%s): %s", cut.code, cut.message, extra={"code": cut.code})
    return cut
