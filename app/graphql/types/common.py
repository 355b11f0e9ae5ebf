"""Enums, errors and paging shared by every feature."""

from __future__ import annotations

from enum import Enum

import strawberry

from app.domain import enums
from app.domain.counts import COUNT_LIMIT
from app.domain.enums import (
    AccessLevel,
    ConnectionStatus,
    ErrorCode,
    MachineStatus,
    RunMode,
    RunOutcome,
    RunPriority,
    RunStatus,
    SecurityRole,
)
from app.domain.errors import DomainError

# The domain's enums are the API's: registering them keeps one source of their values.
for _enum in (
    SecurityRole,
    AccessLevel,
    ErrorCode,
    MachineStatus,
    RunStatus,
    RunPriority,
    RunMode,
    RunOutcome,
    ConnectionStatus,
):
    strawberry.enum(_enum)

__all__ = [
    "AccessLevel",
    "ConnectionStatus",
    "ErrorCode",
    "MachineStatus",
    "MutationError",
    "PageInfo",
    "RunMode",
    "RunOutcome",
    "RunPriority",
    "RunStatus",
    "SecurityRole",
    "ShareLevel",
]


@strawberry.enum
class ShareLevel(Enum):
    """The levels a grant can give: OWNER is never granted, only held by the creator."""

    CO_OWNER = "CO_OWNER"
    USER = "USER"

    @property
    def access_level(self) -> enums.AccessLevel:
        """The same level as an access level."""
        return enums.AccessLevel(self.value)


@strawberry.type
class MutationError:
    """Why a mutation changed nothing."""

    code: ErrorCode
    message: str
    field: str | None = None

    @classmethod
    def of(cls, error: DomainError) -> MutationError:
        """The API form of a rule's refusal."""
        return cls(code=error.code, message=error.message, field=error.field)


TOTAL_COUNT = (
    f"How many the viewer may see: exact up to {COUNT_LIMIT:,}; past that, {COUNT_LIMIT:,}"
    " and totalCountIsExact is false (counting stops there, whatever the list's length)."
)
TOTAL_COUNT_IS_EXACT = (
    f"False when there are more than totalCount (counting stopped at {COUNT_LIMIT:,})."
)


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None
