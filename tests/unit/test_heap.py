"""The server's start-up heap is kept out of the cyclic garbage collector's scans."""

from __future__ import annotations

import gc

from app.main import settle_heap


def test_objects_alive_at_start_up_leave_the_collectors_scans() -> None:
    alive_at_start = [object()]
    try:
        settle_heap()
        assert not any(tracked is alive_at_start for tracked in gc.get_objects())
        created_later = [object()]
        assert any(tracked is created_later for tracked in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(tracked is alive_at_start for tracked in gc.get_objects())
