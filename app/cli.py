"""The `machine-groups` command: the server, users, tokens and policy checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession

from app.agent.command import agent
from app.authz.enforcer import compile_policy, describe_failure
from app.authz.validation import POLICY_SUBJECTS, PolicyError
from app.db.models import RoleAssignment
from app.domain.clock import SystemClock
from app.domain.enums import POLICY_ACTIONS, RecordKind, SecurityRole
from app.domain.environments import resolve_environment
from app.domain.errors import DomainError
from app.domain.identity import mint_token
from app.domain.users import add_user, user_by_name
from app.settings import SettingsError, load_settings
from app.state import AppState

T = TypeVar("T")

cli = typer.Typer(help="Machine Groups API: pools of machines for desktop automations.")
users_cli = typer.Typer(help="Manage users.")
policy_cli = typer.Typer(help="Check policy folders before deploying them.")
cli.add_typer(users_cli, name="users")
cli.add_typer(policy_cli, name="policy")
cli.command()(agent)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _with_database(work: Callable[[AppState, AsyncSession], Awaitable[T]]) -> T:
    """Migrate and bootstrap the configured database, then run `work` in one transaction."""

    async def run() -> T:
        state = AppState.build(load_settings())
        await state.start()
        try:
            async with state.db.write() as session:
                return await work(state, session)
        finally:
            await state.stop()

    try:
        return asyncio.run(run())
    except (SettingsError, PolicyError) as error:
        raise _fail(str(error)) from None
    except DomainError as error:
        raise _fail(f"{error.code.value}: {error.message}") from None


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the server (embedded SQLite unless MG_DATABASE_URL says otherwise)."""
    from app.logs import configure_logging
    from app.main import create_app, server_config, settle_heap

    configure_logging()  # first: loading the settings may log (a key file made private)
    try:
        settings = load_settings()
        app = create_app(settings)
    except (SettingsError, PolicyError) as error:
        raise _fail(str(error)) from None
    settle_heap()
    typer.echo(f"Machine Groups API on http://{host}:{port}/graphql")
    uvicorn.Server(server_config(app, settings, host=host, port=port, log_level="info")).run()


@users_cli.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="The new user's name (unique, case-insensitive).")],
    premium: Annotated[bool, typer.Option(help="Give the premium licence.")] = False,
    role: Annotated[
        list[str] | None,
        typer.Option(help="Security role in kebab-case, e.g. environment-maker; repeatable."),
    ] = None,
    environment: Annotated[
        str | None, typer.Option(help="Environment id for the roles (default: default).")
    ] = None,
) -> None:
    """Create a user, optionally with security roles."""
    try:
        roles = [SecurityRole.from_policy_name(name) for name in role or []]
    except ValueError as error:
        known = ", ".join(r.policy_name for r in SecurityRole)
        raise _fail(f"unknown role ({error}); known roles: {known}") from None

    async def create(state: AppState, session: AsyncSession) -> str:
        target = await resolve_environment(session, environment)
        user = await add_user(session, name, premium=premium, now=state.services.clock.now())
        for held in roles:
            session.add(RoleAssignment(user_id=user.id, environment_id=target.id, role=held.value))
        return user.id

    user_id = _with_database(create)
    typer.echo(f"created user {name} ({user_id})")


@cli.command()
def token(
    name: Annotated[str, typer.Argument(help="The user the token names.")],
    days: Annotated[int, typer.Option(min=1, help="How long the token stays valid.")] = 30,
) -> None:
    """Print a bearer token for a user."""
    from datetime import timedelta

    async def mint(state: AppState, session: AsyncSession) -> str:
        user = await user_by_name(session, name)
        if user is None:
            raise _fail(f"no user named {name!r}")
        if user.deactivated:
            raise _fail(f"user {name!r} is deactivated")
        return mint_token(state.settings, user, SystemClock().now(), timedelta(days=days))

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
