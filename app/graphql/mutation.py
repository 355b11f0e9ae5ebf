"""The one way mutations run: one write transaction, a rule, and errors as data."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.engine import NulCharacterError
from app.domain.access import Seen
from app.domain.caller import Caller
from app.domain.enums import ErrorCode
from app.domain.errors import DomainError
from app.graphql.context import Info
from app.graphql.types.common import MutationError

T = TypeVar("T")
R = TypeVar("R")
CONCURRENT_CHANGE = "a conflicting change was made at the same time; nothing changed, try again"


async def _in_transaction(
    info: Info, operation: Callable[[AsyncSession], Awaitable[T]], *, write: bool = True
) -> tuple[T | None, list[MutationError]]:
    app = info.context.app
    try:
        async with app.transaction() if write else app.db.read() as session:
            return await operation(session), []
    except DomainError as error:
        return None, [MutationError.of(error)]
    except NulCharacterError as error:
        return None, [MutationError(code=ErrorCode.VALIDATION, message=str(error))]
    except IntegrityError:
        # On PostgreSQL two transactions can pass one uniqueness check at the same time;
        # the database's constraint decides, and the loser is told so.
        return None, [MutationError(code=ErrorCode.CONFLICT, message=CONCURRENT_CHANGE)]


async def attempt(
    info: Info, operation: Callable[[AsyncSession, Caller], Awaitable[T]]
) -> tuple[T | None, list[MutationError]]:
    """Run a rule for the user asking in one transaction: its result, or why it failed.

    A failure rolls everything back (but for the traces a rule marks to keep), so a
    failed mutation changes nothing.
    """
    try:
        caller = info.context.caller
    except DomainError as error:
        return None, [MutationError.of(error)]
    return await _in_transaction(info, lambda session: operation(session, caller))


async def check_first(
    info: Info, check: Callable[[AsyncSession, Caller], Awaitable[T]]
) -> tuple[T | None, list[MutationError]]:
    """Like `attempt`, in a read transaction: a rule's checks before costly work that is
    done outside any transaction (and then checked again by the write that keeps it)."""
    try:
        caller = info.context.caller
    except DomainError as error:
        return None, [MutationError.of(error)]
    return await _in_transaction(info, lambda session: check(session, caller), write=False)


async def attempt_as_agent(
    info: Info, operation: Callable[[AsyncSession, str], Awaitable[T]]
) -> tuple[T | None, list[MutationError]]:
    """Like `attempt`, for the machine agent asking: the rule gets the machine's id."""
    try:
        machine_id = info.context.agent.machine.id
    except DomainError as error:
        return None, [MutationError.of(error)]
    return await _in_transaction(info, lambda session: operation(session, machine_id))


async def shown(
    decide: Callable[[Sequence[R]], Awaitable[list[Seen[R] | None]]], record: R | None
) -> Seen[R] | None:
    """A mutation's record as the caller sees it once the change is made: a change can
    take a record out of their sight (a machine leaving a group they share)."""
    if record is None:
        return None
    return (await decide([record]))[0]
