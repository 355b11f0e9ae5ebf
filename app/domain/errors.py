"""The one error type the rules raise; the API turns it into a `MutationError`."""

from __future__ import annotations

from app.domain.enums import ErrorCode


class DomainError(Exception):
    """A rule refused the operation; nothing it did is kept (unless `keep_changes`)."""

    keep_changes = False

    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class WrongGroupPassword(DomainError):
    """A wrong group password: the mutation fails, yet the try is kept for the throttle."""

    keep_changes = True

    def __init__(self) -> None:
        super().__init__(ErrorCode.WRONG_GROUP_PASSWORD, "the group password is wrong", "password")


def not_found(what: str, field: str | None = None) -> DomainError:
    """The record does not exist or the viewer may not see it (no existence leak)."""
    return DomainError(ErrorCode.NOT_FOUND, f"{what} not found", field)


def validation(message: str, field: str | None = None) -> DomainError:
    """A bad argument."""
    return DomainError(ErrorCode.VALIDATION, message, field)


def permission_denied(message: str) -> DomainError:
    """The viewer sees the record but may not do this."""
    return DomainError(ErrorCode.PERMISSION_DENIED, message)


def conflict(message: str, field: str | None = None) -> DomainError:
    """Duplicate name or stale state."""
    return DomainError(ErrorCode.CONFLICT, message, field)
