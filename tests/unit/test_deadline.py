"""The deadline counts work, not waiting, and says why a request ended (no I/O)."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.deadline import DeadlineExceeded, ServiceBusy, bounded, give_up, past_deadline, waiting


def test_waiting_is_not_counted_but_work_after_it_is() -> None:
    async def scenario() -> None:
        async with bounded(0.2):
            with waiting():
                await asyncio.sleep(0.4)  # a long poll, twice the deadline
            assert not past_deadline()
            await asyncio.sleep(0.1)  # half of the deadline's work
        with pytest.raises(DeadlineExceeded):
            async with bounded(0.2):
                with waiting():
                    await asyncio.sleep(0.3)
                await asyncio.sleep(1)
        assert not past_deadline()  # outside a request, nothing is past

    asyncio.run(scenario())


def test_the_first_reason_to_give_up_ends_the_request_at_once() -> None:
    async def scenario() -> float:
        began = time.monotonic()
        with pytest.raises(ServiceBusy):
            async with bounded(5):
                first = give_up(ServiceBusy())
                assert give_up(DeadlineExceeded.after(5)) is first
                assert past_deadline()  # SQLite stops the request's statements now
                await asyncio.sleep(5)
        return time.monotonic() - began

    assert asyncio.run(scenario()) < 1
