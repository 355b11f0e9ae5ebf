"""Live reload: watch the policy folder and apply each valid edit within a second or so."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from watchfiles import awatch

from app.authz.enforcer import PolicyOutcome, PolicyStore
from app.domain.clock import Clock

log = logging.getLogger(__name__)

# Small debounce: an edit must apply within 2 s; an editor's save settles well within it.
DEBOUNCE_MS = 150


async def watch_policies(
    store: PolicyStore,
    clock: Clock,
    on_outcome: Callable[[PolicyOutcome], Awaitable[None]] | None = None,
) -> None:
    """Reload the policy on every change of its folder until cancelled."""
    async for _changes in awatch(store.folder, debounce=DEBOUNCE_MS, step=50):
        outcome = store.reload(clock.now())
        if outcome.error:
            log.error("policy edit rejected, previous policy stays in force: %s", outcome.error)
        elif outcome.applied:
            log.info("policy applied (checksum %s)", outcome.checksum)
        else:
            continue
        if on_outcome is not None:
            await on_outcome(outcome)
