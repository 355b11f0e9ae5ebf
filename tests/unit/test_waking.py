"""When a waiting machine looks for work again (app/queue/dispatch.py `Waking`)."""

from __future__ import annotations

from app.domain.events import Event, EventKind, group_topic, machine_topic
from app.queue.dispatch import Waking

MACHINE, GROUP = "m1", "g1"
QUEUED_IN_GROUP = Event(EventKind.RUN_QUEUED, (group_topic(GROUP),), "r1")
QUEUED_FOR_IT = Event(EventKind.RUN_QUEUED, (machine_topic(MACHINE),), "r2")
ITS_RUN_ENDED = Event(EventKind.RUN_CHANGED, (machine_topic(MACHINE), group_topic(GROUP)), "r3")
OTHERS_RUN = Event(EventKind.RUN_CHANGED, (machine_topic("m2"), group_topic(GROUP)), "r4")
GROUP_CHANGED = Event(EventKind.GROUP_CHANGED, (group_topic(GROUP),))


def woken(events: list[Event], *, held_back: bool) -> bool:
    waking = Waking(held_back=held_back)
    waking.note(MACHINE, events, 1.0)
    return waking.woken


def test_runs_queued_in_the_group_wake_an_idle_machine() -> None:
    assert woken([QUEUED_IN_GROUP], held_back=False)
    assert not woken([OTHERS_RUN], held_back=False)


def test_a_busy_machine_or_one_in_maintenance_waits_for_its_own_run_or_the_group() -> None:
    # Thousands of runs queued in maintenance used to cost every waiting machine a read
    # each, until a long poll's work passed its deadline (REQUEST_TIMEOUT).
    assert not woken([QUEUED_IN_GROUP] * 1000, held_back=True)
    assert woken([QUEUED_FOR_IT], held_back=True)
    assert woken([ITS_RUN_ENDED], held_back=True)
    assert woken([QUEUED_IN_GROUP, GROUP_CHANGED], held_back=True)
