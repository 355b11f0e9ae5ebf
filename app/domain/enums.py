"""The vocabulary shared by the rules, the policy and the API."""

from __future__ import annotations

from enum import Enum


class SecurityRole(Enum):
    SYSTEM_ADMINISTRATOR = "SYSTEM_ADMINISTRATOR"
    ENVIRONMENT_MAKER = "ENVIRONMENT_MAKER"
    DESKTOP_FLOWS_MACHINE_OWNER = "DESKTOP_FLOWS_MACHINE_OWNER"
    DESKTOP_FLOWS_MACHINE_USER = "DESKTOP_FLOWS_MACHINE_USER"
    DESKTOP_FLOWS_MACHINE_USER_CAN_SHARE = "DESKTOP_FLOWS_MACHINE_USER_CAN_SHARE"

    @property
    def policy_name(self) -> str:
        """The kebab-case name admins use in `policies/` and on the command line."""
        return kebab(self.value)

    @classmethod
    def from_policy_name(cls, name: str) -> SecurityRole:
        """The role named in kebab-case (`environment-maker`)."""
        return cls(name.strip().upper().replace("-", "_"))


class AccessLevel(Enum):
    OWNER = "OWNER"
    CO_OWNER = "CO_OWNER"
    USER = "USER"

    @property
    def policy_name(self) -> str:
        """The kebab-case name of the level in `policies/`."""
        return kebab(self.value)

    @property
    def rank(self) -> int:
        """Higher grants more: OWNER > CO_OWNER > USER."""
        return {"USER": 1, "CO_OWNER": 2, "OWNER": 3}[self.value]


class RecordKind(Enum):
    MACHINE = "machine"
    MACHINE_GROUP = "machine_group"


class Action(Enum):
    VIEW = "view"
    REGISTER = "register"
    CREATE = "create"
    RUN = "run"
    SHARE = "share"
    ADD_MACHINE = "add_machine"
    REMOVE_MACHINE = "remove_machine"
    EDIT = "edit"
    DELETE = "delete"


POLICY_ACTIONS = tuple(action for action in Action if action is not Action.VIEW)


class ErrorCode(Enum):
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    VALIDATION = "VALIDATION"
    CONFLICT = "CONFLICT"
    USER_DEACTIVATED = "USER_DEACTIVATED"
    PREMIUM_REQUIRED = "PREMIUM_REQUIRED"
    UNAVAILABLE_IN_REGION = "UNAVAILABLE_IN_REGION"
    WRONG_GROUP_PASSWORD = "WRONG_GROUP_PASSWORD"
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"
    GROUP_FULL = "GROUP_FULL"
    GROUP_NOT_EMPTY = "GROUP_NOT_EMPTY"
    QUEUE_FULL = "QUEUE_FULL"
    MANAGED_BY_GROUP = "MANAGED_BY_GROUP"
    CONNECTION_BROKEN = "CONNECTION_BROKEN"
    NO_MACHINES = "NO_MACHINES"
    RUN_NOT_ACTIVE = "RUN_NOT_ACTIVE"
    LEASE_LOST = "LEASE_LOST"


class MachineStatus(Enum):
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"
    MAINTENANCE = "MAINTENANCE"


class RunStatus(Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


class RunPriority(Enum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"


class RunMode(Enum):
    ATTENDED = "ATTENDED"
    UNATTENDED = "UNATTENDED"


class RunOutcome(Enum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class ConnectionStatus(Enum):
    ACTIVE = "ACTIVE"
    BROKEN = "BROKEN"


def kebab(name: str) -> str:
    """`CO_OWNER` -> `co-owner`."""
    return name.lower().replace("_", "-")
