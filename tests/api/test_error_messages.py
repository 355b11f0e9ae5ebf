"""Every error message of the API, walked once per error code: a message a person can act
on never shows `None`, never stops mid-sentence ("only administrators may"), and names,
in `field`, only an argument or input field of the operation that was sent.

Two walks: the source's every rule refusal (each call that makes a DomainError), and a
table of requests, at least one per error code, answered by the live server.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLField,
    GraphQLInputObjectType,
    build_schema,
    get_named_type,
)

from app.domain.enums import ErrorCode
from app.graphql.schema import schema_sdl
from app.settings import Settings
from tests.api.conftest import Account, Api, MakeUser
from tests.api.helpers import create_environment
from tests.api.queue_helpers import (
    GROUP_PASSWORD,
    MakeGroup,
    MakeMachine,
    Pool,
    add_machine,
    claimed,
    connection_id,
    heartbeat,
    pool,
    share_group,
    started,
)
from tests.conftest import REPO

SCHEMA = build_schema(schema_sdl())
# Words a sentence does not end on: a message ending so was cut short.
DANGLING = {
    "a", "an", "and", "at", "by", "for", "from", "in", "may", "must", "not", "of", "on", "or",
    "the", "this", "to", "with", "your",
}  # fmt: skip


def unfinished(message: str) -> bool:
    """Whether a message stops mid-sentence."""
    words = re.findall(r"[A-Za-z]+|{…}", message)  # a value put in counts as a word
    return not words or words[-1].lower() in DANGLING or message.rstrip()[-1] in ":,;("


def accepted_names(operation: GraphQLField) -> set[str]:
    """The arguments of an operation and the fields of its input objects."""
    names = set()
    for name, argument in operation.args.items():
        names.add(name)
        named = get_named_type(argument.type)
        if isinstance(named, GraphQLInputObjectType):
            names.update(named.fields)
    return names


EVERY_INPUT_NAME = set().union(
    *(
        accepted_names(operation)
        for root in (SCHEMA.query_type, SCHEMA.mutation_type, SCHEMA.subscription_type)
        if root is not None
        for operation in root.fields.values()
    )
)


def assert_actionable(error: dict[str, Any], operation: str) -> None:
    """A refusal's message is whole and names only fields the operation takes."""
    message = error["message"]
    assert message == message.strip() and message, error
    assert "None" not in message, error
    assert not unfinished(message), error
    assert "{" not in message and "}" not in message, error  # no template left unfilled
    assert SCHEMA.mutation_type is not None
    if error["field"] is not None:
        assert error["field"] in accepted_names(SCHEMA.mutation_type.fields[operation]), error


# --- the source: every refusal a rule can raise ------------------------------------------

# How each helper of app/domain/errors.py (and the run helper) makes a DomainError:
# (its code, the position of its message argument or None, the position of its field).
HELPERS: dict[str, tuple[ErrorCode | None, int | None, int | None]] = {
    "not_found": (ErrorCode.NOT_FOUND, None, 1),  # its message is "<what> not found"
    "validation": (ErrorCode.VALIDATION, 0, 1),
    "permission_denied": (ErrorCode.PERMISSION_DENIED, 0, None),
    "conflict": (ErrorCode.CONFLICT, 0, 1),
    "already_ended": (ErrorCode.RUN_NOT_ACTIVE, 1, None),
    "WrongGroupPassword": (ErrorCode.WRONG_GROUP_PASSWORD, None, None),
    "DomainError": (None, 1, 2),  # its code is its first argument
}


@dataclass(frozen=True)
class Refusal:
    """One place in the source that makes a DomainError."""

    where: str
    code: ErrorCode
    template: str | None  # the message, `{…}` where a value goes; None: computed elsewhere
    field: str | None


def _template(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(part.value) if isinstance(part, ast.Constant) else "{…}" for part in node.values
        )
    return None


def _argument(call: ast.Call, position: int | None, keyword: str) -> ast.expr | None:
    for given in call.keywords:
        if given.arg == keyword:
            return given.value
    if position is not None and position < len(call.args):
        return call.args[position]
    return None


def source_refusals() -> Iterator[Refusal]:
    """Every call in app/ that makes a DomainError, with what it says."""
    for path in sorted((REPO / "app").rglob("*.py")):
        if path.name == "errors.py" and path.parent.name == "domain":
            continue  # the helpers themselves
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            if node.func.id not in HELPERS:
                continue
            code, message_at, field_at = HELPERS[node.func.id]
            if code is None:  # DomainError(ErrorCode.X, ...)
                first = node.args[0] if node.args else None
                if not isinstance(first, ast.Attribute):
                    continue
                code = ErrorCode(first.attr)
            field = _argument(node, field_at, "field")
            named = field.value if isinstance(field, ast.Constant) else None
            yield Refusal(
                where=f"{path.relative_to(REPO)}:{node.lineno}",
                code=code,
                template=_template(_argument(node, message_at, "message")),
                field=named if isinstance(named, str) else None,
            )


REFUSALS = list(source_refusals())


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda code: code.value)
def test_each_error_codes_messages_in_the_source_are_whole_sentences(code: ErrorCode) -> None:
    refusals = [refusal for refusal in REFUSALS if refusal.code is code]
    assert refusals, f"no rule raises {code.value}"
    for refusal in refusals:
        if refusal.template is not None:
            assert not unfinished(refusal.template), refusal
            assert "None" not in refusal.template, refusal
        if refusal.field is not None:
            assert refusal.field in EVERY_INPUT_NAME, refusal


def test_the_walk_sees_the_sentences_it_must_refuse() -> None:
    """Not vacuous: the checks refuse what the issue found."""
    assert unfinished("only system administrators of the default environment may")
    assert unfinished("name exactly one target:")
    assert not unfinished("the run has ended already (SUCCEEDED): this report changes nothing")
    assert len(REFUSALS) > 50


# --- the server: a table of requests, at least one per code ------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small limits, so that a full group and a full queue are quick to make."""
    return dataclasses.replace(settings, max_machines_per_group=1, max_queued_runs=1)


@dataclass
class World:
    """What a case needs: the API, its administrator, and factories."""

    api: Api
    admin: Account
    make_user: MakeUser
    make_group: MakeGroup
    make_machine: MakeMachine

    def call(self, as_: Account | str, operation: str, **arguments: Any) -> list[dict[str, Any]]:
        """The errors of one mutation, sent with its arguments as variables."""
        assert SCHEMA.mutation_type is not None
        declared = SCHEMA.mutation_type.fields[operation].args
        variables = ", ".join(f"${name}: {declared[name].type}" for name in arguments)
        passed = ", ".join(f"{name}: ${name}" for name in arguments)
        call = f"{operation}({passed})" if arguments else operation
        document = f"mutation{f'({variables})' if arguments else ''} {{ {call} {{"
        document += " errors { code message field } } }"
        errors: list[dict[str, Any]] = self.api.mutate(document, arguments, as_=as_)["errors"]
        return errors

    def pool(self) -> Pool:
        """A group of one online machine, with a connection, owned by the administrator."""
        return pool(self.api, self.admin, self.make_group, self.make_machine)

    def run_on(self, ready: Pool) -> str:
        """A run started on the pool's connection."""
        run_id: str = started(self.api, ready.connection_id, as_=self.admin)["id"]
        return run_id


Case = Callable[[World], tuple[str, list[dict[str, Any]]]]


def _not_administrator(world: World) -> tuple[str, list[dict[str, Any]]]:
    dana = world.make_user()
    return "createUser", world.call(dana, "createUser", input={"name": "eve"})


def _may_not_edit(world: World) -> tuple[str, list[dict[str, Any]]]:
    ready, member = world.pool(), world.make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    share_group(world.api, ready.group_id, member, "USER", as_=world.admin)
    operation = "setMachineGroupMaintenance"
    return operation, world.call(member, operation, id=ready.group_id, enabled=True)


def _not_the_starter(world: World) -> tuple[str, list[dict[str, Any]]]:
    ready, member = world.pool(), world.make_user(roles=["DESKTOP_FLOWS_MACHINE_USER"])
    share_group(world.api, ready.group_id, member, "USER", as_=world.admin)
    return "cancelRun", world.call(member, "cancelRun", id=world.run_on(ready))


def _unknown_connection(world: World) -> tuple[str, list[dict[str, Any]]]:
    run = {"connectionId": "no-such-connection", "flowName": "Invoice"}
    return "startRun", world.call(world.admin, "startRun", input=run)


def _no_grant_to_revoke(world: World) -> tuple[str, list[dict[str, Any]]]:
    group, dana = world.make_group(), world.make_user()
    operation = "revokeMachineGroupAccess"
    return operation, world.call(world.admin, operation, groupId=group, userId=dana.id)


def _connection(world: World, **target: str) -> tuple[str, list[dict[str, Any]]]:
    given = {"name": "nightly", "username": "robot", "password": "pw", **target}
    return "createConnection", world.call(world.admin, "createConnection", input=given)


def _no_target(world: World) -> tuple[str, list[dict[str, Any]]]:
    return _connection(world)


def _two_targets(world: World) -> tuple[str, list[dict[str, Any]]]:
    machine, _ = world.make_machine()
    return _connection(world, groupId=world.make_group(), machineId=machine)


def _empty_name(world: World) -> tuple[str, list[dict[str, Any]]]:
    return "createMachineGroup", world.call(world.admin, "createMachineGroup", input={"name": ""})


def _duplicate_group(world: World) -> tuple[str, list[dict[str, Any]]]:
    world.make_group(name="Finance bots")
    given = {"name": "FINANCE BOTS"}
    return "createMachineGroup", world.call(world.admin, "createMachineGroup", input=given)


def _share_to_deactivated(world: World) -> tuple[str, list[dict[str, Any]]]:
    group, dana = world.make_group(), world.make_user()
    assert world.call(world.admin, "deactivateUser", userId=dana.id) == []
    given = {"groupId": group, "userId": dana.id, "access": "USER"}
    return "shareMachineGroup", world.call(world.admin, "shareMachineGroup", input=given)


def _not_premium(world: World) -> tuple[str, list[dict[str, Any]]]:
    maker = world.make_user(roles=["ENVIRONMENT_MAKER"])
    return "registerMachine", world.call(maker, "registerMachine", input={"name": "VM-9"})


def _restricted_region(world: World) -> tuple[str, list[dict[str, Any]]]:
    environment = create_environment(world.api, world.admin, "government", "gcc")["id"]
    given = {"name": "bots", "environmentId": environment}
    return "createMachineGroup", world.call(world.admin, "createMachineGroup", input=given)


def _add_with(world: World, group: str, password: str) -> list[dict[str, Any]]:
    machine, _ = world.make_machine()
    given = {"machineId": machine, "groupId": group, "password": password}
    return world.call(world.admin, "addMachineToGroup", input=given)


def _wrong_password(world: World) -> tuple[str, list[dict[str, Any]]]:
    return "addMachineToGroup", _add_with(world, world.pool().group_id, "not the password")


def _throttled(world: World) -> tuple[str, list[dict[str, Any]]]:
    group = world.pool().group_id
    for _ in range(5):
        _add_with(world, group, "not the password")
    return "addMachineToGroup", _add_with(world, group, GROUP_PASSWORD)


def _full_group(world: World) -> tuple[str, list[dict[str, Any]]]:
    return "addMachineToGroup", _add_with(world, world.pool().group_id, GROUP_PASSWORD)


def _group_not_empty(world: World) -> tuple[str, list[dict[str, Any]]]:
    return "deleteMachineGroup", world.call(
        world.admin, "deleteMachineGroup", id=world.pool().group_id
    )


def _start(world: World, connection: str) -> list[dict[str, Any]]:
    run = {"connectionId": connection, "flowName": "Invoice"}
    return world.call(world.admin, "startRun", input=run)


def _full_queue(world: World) -> tuple[str, list[dict[str, Any]]]:
    ready = world.pool()
    world.run_on(ready)
    return "startRun", _start(world, ready.connection_id)


def _machine_in_group(world: World) -> tuple[str, list[dict[str, Any]]]:
    ready, dana = world.pool(), world.make_user()
    given = {"machineId": ready.machine_id, "userId": dana.id, "access": "USER"}
    return "shareMachine", world.call(world.admin, "shareMachine", input=given)


def _broken_connection(world: World) -> tuple[str, list[dict[str, Any]]]:
    machine, _ = world.make_machine()
    connection = connection_id(world.api, as_=world.admin, machine_id=machine)
    group = world.make_group()
    assert add_machine(world.api, machine, group, as_=world.admin)["errors"] == []
    return "startRun", _start(world, connection)


def _no_machines(world: World) -> tuple[str, list[dict[str, Any]]]:
    connection = connection_id(world.api, as_=world.admin, group_id=world.make_group())
    return "startRun", _start(world, connection)


def _completed_twice(world: World) -> tuple[str, list[dict[str, Any]]]:
    ready = world.pool()
    run = world.run_on(ready)
    assert claimed(world.api, ready.key) is not None
    outcome = {"id": run, "outcome": "SUCCEEDED"}
    assert world.call(ready.key, "completeRun", **outcome) == []
    return "completeRun", world.call(ready.key, "completeRun", **outcome)


def _cancelled_twice(world: World) -> tuple[str, list[dict[str, Any]]]:
    run = world.run_on(world.pool())
    assert world.call(world.admin, "cancelRun", id=run) == []
    return "cancelRun", world.call(world.admin, "cancelRun", id=run)


def _another_machines_run(world: World) -> tuple[str, list[dict[str, Any]]]:
    ready = world.pool()
    run = world.run_on(ready)
    assert claimed(world.api, ready.key) is not None
    _, stranger = world.make_machine()
    heartbeat(world.api, stranger)
    return "completeRun", world.call(stranger, "completeRun", id=run, outcome="SUCCEEDED")


# (code, case, what its message must also say)
TABLE: list[tuple[ErrorCode, Case, str]] = [
    (ErrorCode.PERMISSION_DENIED, _not_administrator, "default environment may create users"),
    (ErrorCode.PERMISSION_DENIED, _may_not_edit, "you may not edit this machine group"),
    (ErrorCode.PERMISSION_DENIED, _not_the_starter, "co-owner of its target may cancel it"),
    (ErrorCode.NOT_FOUND, _unknown_connection, "connection not found"),
    (ErrorCode.NOT_FOUND, _no_grant_to_revoke, "grant not found"),
    (ErrorCode.VALIDATION, _no_target, "give machineId or groupId"),
    (ErrorCode.VALIDATION, _two_targets, "not both"),
    (ErrorCode.VALIDATION, _empty_name, "name must not be empty"),
    (ErrorCode.CONFLICT, _duplicate_group, "named 'Finance bots' exists already"),
    (ErrorCode.USER_DEACTIVATED, _share_to_deactivated, "is deactivated"),
    (ErrorCode.PREMIUM_REQUIRED, _not_premium, "premium licence"),
    (ErrorCode.UNAVAILABLE_IN_REGION, _restricted_region, "region 'gcc'"),
    (ErrorCode.WRONG_GROUP_PASSWORD, _wrong_password, "password is wrong"),
    (ErrorCode.TOO_MANY_ATTEMPTS, _throttled, "accepted again in 15 min"),
    (ErrorCode.GROUP_FULL, _full_group, "maximum of 1 machines"),
    (ErrorCode.GROUP_NOT_EMPTY, _group_not_empty, "before deleting it"),
    (ErrorCode.QUEUE_FULL, _full_queue, "maximum of 1 runs"),
    (ErrorCode.MANAGED_BY_GROUP, _machine_in_group, "manage access on the group"),
    (ErrorCode.CONNECTION_BROKEN, _broken_connection, "MACHINE_JOINED_GROUP"),
    (ErrorCode.NO_MACHINES, _no_machines, "addMachineToGroup"),
    (ErrorCode.RUN_NOT_ACTIVE, _completed_twice, "(SUCCEEDED): this report changes nothing"),
    (ErrorCode.RUN_NOT_ACTIVE, _cancelled_twice, "(CANCELLED, CANCELLED_BY_USER)"),
    (ErrorCode.LEASE_LOST, _another_machines_run, "does not hold the run"),
]


def test_the_table_has_a_request_for_every_error_code() -> None:
    assert {code for code, _, _ in TABLE} == set(ErrorCode)


@pytest.fixture
def world(
    api: Api,
    admin: Account,
    make_user: MakeUser,
    make_group: MakeGroup,
    make_machine: MakeMachine,
) -> World:
    return World(api, admin, make_user, make_group, make_machine)


@pytest.mark.parametrize(
    ("code", "case", "says"),
    TABLE,
    ids=[f"{code.value}-{case.__name__.strip('_')}" for code, case, _ in TABLE],
)
def test_each_error_code_answers_a_message_a_person_can_act_on(
    world: World, code: ErrorCode, case: Case, says: str
) -> None:
    operation, errors = case(world)
    assert errors, f"{operation} succeeded"
    first = errors[0]
    assert first["code"] == code.value, errors
    assert says in first["message"], first
    for error in errors:
        assert_actionable(error, operation)


def test_an_unknown_connection_is_named_by_the_argument_that_gave_it(world: World) -> None:
    _, errors = _unknown_connection(world)
    assert errors == [
        {"code": "NOT_FOUND", "message": "connection not found", "field": "connectionId"}
    ]


def test_the_refusals_the_walk_reads_are_those_of_the_source() -> None:
    """The source walk found the rules' files (a moved helper would empty it silently)."""
    files = {refusal.where.split(":")[0] for refusal in REFUSALS}
    rules = {
        "app/domain/access.py",
        "app/domain/run_life/requests.py",
        "app/domain/run_life/changes.py",
    }
    assert rules <= files
    assert all(Path(REPO / name).is_file() for name in files)
