"""The `machine-groups` command: the server, users, tokens and policy checks."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession

from app.agent.command import agent
from app.authz.enforcer import PolicyStore, compile_policy, describe_failure
from app.authz.validation import POLICY_SUBJECTS, PolicyError
from app.db.engine import Database
from app.db.existing import NoDatabase, check_file, check_schema
from app.db.models import Environment, User
from app.domain.caller import Caller, Services
from app.domain.clock import SystemClock
from app.domain.enums import POLICY_ACTIONS, RecordKind, SecurityRole
from app.domain.environments import environment_named, environment_names
from app.domain.errors import DomainError
from app.domain.identity import mint_token
from app.domain.users import (
    assign_role,
    create_user,
    deactivate,
    operator,
    set_premium,
    user_by_name,
    users_and_roles,
)
from app.domain.users import remove_role as take_role
from app.settings import SettingsError, database_url_of, load_settings

T = TypeVar("T")

cli = typer.Typer(
    help="Machine Groups API: pools of machines for desktop automations.",
    # Plain help: rich's option tables cut words longer than their column (role names);
    # as wide as the terminal allows, up to 120 columns.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},
)
users_cli = typer.Typer(
    help="Manage users: run where the server runs, or with its MG_DATABASE_URL (and"
    " MG_SECRET_KEY if it has one)."
)
policy_cli = typer.Typer(help="Check policy folders before deploying them.")
cli.add_typer(users_cli, name="users")
cli.add_typer(policy_cli, name="policy")
cli.command()(agent)

ROLE_NAMES = ", ".join(role.policy_name for role in SecurityRole)
ENVIRONMENT_HELP = "The environment of the roles, by name or id (default: default)."


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _with_database(work: Callable[[AsyncSession, Caller], Awaitable[T]]) -> T:
    """Run `work` in one transaction on the server's database, as the command line.

    The database must be the one `serve` made with the same settings: it is never
    created (nor migrated, nor its key file made) here.
    """

    async def run() -> T:
        check_file(database_url_of(os.environ))  # before anything opens (and makes) it
        settings = load_settings(create_key=False)
        await check_schema(settings.database_url)
        clock = SystemClock()
        services = Services(
            settings=settings,
            clock=clock,
            policy=PolicyStore.empty(settings.policy_dir, clock.now()),
        )
        database = Database(settings.database_url)
        try:
            async with database.write() as session:
                return await work(session, await operator(session, services))
        finally:
            await database.dispose()

    try:
        return asyncio.run(run())
    except (SettingsError, NoDatabase) as error:
        raise _fail(str(error)) from None
    except DomainError as error:
        raise _fail(f"{error.code.value}: {error.message}") from None


def _listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port for uvicorn, or one line saying why there is none."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise _fail(f"cannot listen on {host!r}: {error.strerror}; give another --host") from None
    listener = socket.socket(family, kind, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            raise _fail(
                f"port {port} on {host} is in use (another server?): stop it, or choose"
                " another port with --port"
            ) from None
        raise _fail(
            f"cannot listen on {host}:{port} ({error.strerror}): choose another with --port"
            " or --host"
        ) from None
    return listener


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the server (embedded SQLite unless MG_DATABASE_URL says otherwise)."""
    from app.logs import configure_logging
    from app.main import create_app, server_config, settle_heap

    configure_logging()  # first: loading the settings may log (a key file made private)
    listener = _listening_socket(host, port)  # a busy port is said before anything starts
    try:
        settings = load_settings()
        app = create_app(settings)
    except (SettingsError, PolicyError) as error:
        listener.close()
        raise _fail(str(error)) from None
    settle_heap()
    typer.echo(f"Machine Groups API on http://{host}:{port}/graphql")
    config = server_config(app, settings, host=host, port=port, log_level="info")
    uvicorn.Server(config).run(sockets=[listener])


def _roles(names: Sequence[str] | None, option: str) -> list[SecurityRole]:
    roles = []
    for name in names or []:
        try:
            roles.append(SecurityRole.from_policy_name(name))
        except ValueError:
            raise _fail(f"unknown role {name!r} for {option}; the roles: {ROLE_NAMES}") from None
    return roles


async def _user(session: AsyncSession, name: str) -> User:
    user = await user_by_name(session, name)
    if user is None:
        raise _fail(f"no user named {name!r} (`machine-groups users list` lists them)")
    return user


async def _environment(session: AsyncSession, name: str | None) -> Environment:
    environment = await environment_named(session, name)
    if environment is None:
        known = ", ".join(await environment_names(session))
        raise _fail(f"no environment named {name!r}; the environments: {known}")
    return environment


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _roles_text(roles: dict[str, list[SecurityRole]]) -> str:
    """`default: environment-maker, ...; finance: ...`, or `-` for none."""
    held = [
        f"{environment}: {', '.join(role.policy_name for role in in_environment)}"
        for environment, in_environment in roles.items()
    ]
    return "; ".join(held) or "-"


async def _described(session: AsyncSession, caller: Caller, name: str | None = None) -> list[str]:
    """The users (or the one named) as rows: name, premium, deactivated, roles."""
    rows = [["NAME", "PREMIUM", "DEACTIVATED", "ROLES (per environment)"]]
    for user, roles in await users_and_roles(session, caller):
        if name is None or user.name == name:
            rows.append([user.name, _yes(user.premium), _yes(user.deactivated), _roles_text(roles)])
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]


RoleOption = Annotated[
    list[str] | None,
    typer.Option(
        "--role",
        metavar="ROLE",
        help=f"Give a security role in the environment; repeatable. Roles: {ROLE_NAMES}",
    ),
]
EnvironmentOption = Annotated[str | None, typer.Option(help=ENVIRONMENT_HELP)]


@users_cli.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="The new user's name (unique, case-insensitive).")],
    premium: Annotated[bool, typer.Option(help="Give the premium licence.")] = False,
    role: RoleOption = None,
    environment: EnvironmentOption = None,
) -> None:
    """Create a user, optionally with security roles."""
    roles = _roles(role, "--role")

    async def create(session: AsyncSession, caller: Caller) -> str:
        target = await _environment(session, environment)
        user = await create_user(session, caller, name=name, premium=premium)
        for held in roles:
            await assign_role(session, caller, user.id, held, target.id)
        return user.id

    user_id = _with_database(create)
    typer.echo(f"created user {name.strip()} ({user_id})")


@users_cli.command("list")
def users_list() -> None:
    """List every user: premium licence, deactivation, security roles per environment."""

    async def listed(session: AsyncSession, caller: Caller) -> list[str]:
        return await _described(session, caller)

    for line in _with_database(listed):
        typer.echo(line)


@users_cli.command("update")
def users_update(
    name: Annotated[str, typer.Argument(help="The user to change.")],
    premium: Annotated[
        bool | None,
        typer.Option("--premium/--no-premium", help="Give or take the premium licence."),
    ] = None,
    role: RoleOption = None,
    remove_role: Annotated[
        list[str] | None,
        typer.Option(
            "--remove-role", metavar="ROLE", help="Take a security role away; repeatable."
        ),
    ] = None,
    environment: EnvironmentOption = None,
) -> None:
    """Change a user's premium licence and security roles (audited like the API's)."""
    given, taken = _roles(role, "--role"), _roles(remove_role, "--remove-role")
    if premium is None and not given and not taken:
        raise _fail("nothing to change: give --premium or --no-premium, --role or --remove-role")

    async def update(session: AsyncSession, caller: Caller) -> list[str]:
        user = await _user(session, name)
        target = await _environment(session, environment)
        if premium is not None:
            await set_premium(session, caller, user.id, premium)
        for held in given:
            await assign_role(session, caller, user.id, held, target.id)
        for held in taken:
            await take_role(session, caller, user.id, held, target.id)
        return await _described(session, caller, user.name)

    for line in _with_database(update):
        typer.echo(line)


@users_cli.command("deactivate")
def users_deactivate(name: Annotated[str, typer.Argument(help="The user to deactivate.")]) -> None:
    """Deactivate a user: their tokens stop working at once, open sockets close."""

    async def deactivated(session: AsyncSession, caller: Caller) -> str:
        user = await _user(session, name)
        await deactivate(session, caller, user.id)
        return user.name

    typer.echo(f"deactivated user {_with_database(deactivated)}: their tokens no longer work")


@cli.command()
def token(
    name: Annotated[str, typer.Argument(help="The user the token names.")],
    days: Annotated[int, typer.Option(min=1, help="How long the token stays valid.")] = 30,
) -> None:
    """Print a bearer token for a user (run where the server runs, or with its settings)."""

    async def mint(session: AsyncSession, caller: Caller) -> str:
        user = await _user(session, name)
        if user.deactivated:
            raise _fail(f"user {user.name!r} is deactivated: their tokens would not work")
        return mint_token(caller.settings, user, caller.clock.now(), timedelta(days=days))

    typer.echo(_with_database(mint))


@policy_cli.command("check")
def policy_check(
    folder: Annotated[Path, typer.Argument(help="The policy folder to check.")] = Path("policies"),
) -> None:
    """Validate a policy folder and print what each role and level may do."""
    try:
        table = compile_policy(folder, SystemClock().now())
    except Exception as error:  # whatever is wrong, say it in words: never a traceback
        raise _fail(describe_failure(folder, error)) from None
    typer.echo(f"{folder}: valid (checksum {table.checksum[:12]})")
    typer.echo("SYSTEM_ADMINISTRATOR may do everything; it is fixed, not in the file.")
    width = max(len(subject) for subject in POLICY_SUBJECTS)
    for kind in RecordKind:
        actions = [a.value for a in POLICY_ACTIONS]
        typer.echo("")
        typer.echo(f"{kind.value:<{width}}  " + "  ".join(actions))
        for subject in POLICY_SUBJECTS:
            marks = [
                ("X" if table.permits(subject, kind, action) else "-").center(len(action))
                for action in actions
            ]
            typer.echo(f"{subject:<{width}}  " + "  ".join(marks))


@cli.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of printing.")
    ] = None,
) -> None:
    """Print the GraphQL schema (SDL) that `schema.graphql` holds."""
    from app.graphql.schema import schema_sdl

    if output is None:
        typer.echo(schema_sdl(), nl=False)
    else:
        output.write_text(schema_sdl())


def main() -> None:
    """Entry point of the `machine-groups` console script."""
    cli()


if __name__ == "__main__":
    main()
