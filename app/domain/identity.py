"""Bearer tokens: signed JWTs for users, random machine keys (stored hashed) for agents."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from functools import lru_cache

import jwt
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import Machine, RoleAssignment, User
from app.domain.caller import MachineAgent, Principal, Viewer
from app.domain.enums import SecurityRole
from app.settings import Settings

MACHINE_KEY_PREFIX = "mgk_"
TOKEN_ALGORITHM = "HS256"
DEFAULT_TOKEN_LIFETIME = timedelta(days=30)
STANDING_BATCH = 500


def mint_token(
    settings: Settings, user: User, now: datetime, lifetime: timedelta = DEFAULT_TOKEN_LIFETIME
) -> str:
    """A signed bearer token naming the user."""
    claims = {"sub": user.id, "name": user.name, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, settings.secret_key, algorithm=TOKEN_ALGORITHM)


# How to get a user token, said in every refusal that a new token cures.
GET_A_TOKEN = "`machine-groups token NAME`, run with the server's settings, prints one"
# A WebSocket close frame carries at most this many bytes of reason (RFC 6455).
CLOSE_REASON_BYTES = 123


class Refusal(Enum):
    """Why a bearer token is refused: a code for programs, a sentence for people.

    Each value is (code, what is wrong, what to do). The texts are plain ASCII without
    double quotes or backslashes: they travel in a `WWW-Authenticate` header too.
    """

    MISSING = (
        "TOKEN_MISSING",
        "no bearer token was sent",
        f"send the header `Authorization: Bearer <token>`; {GET_A_TOKEN}",
    )
    MALFORMED = (
        "TOKEN_MALFORMED",
        "the bearer token is malformed (neither a user token nor a machine key)",
        f"send it as printed, whole; {GET_A_TOKEN}",
    )
    EXPIRED = ("TOKEN_EXPIRED", "the bearer token expired", f"get a new one: {GET_A_TOKEN}")
    BAD_SIGNATURE = (
        "TOKEN_SIGNATURE_INVALID",
        "the bearer token was not signed by this server's key",
        f"it comes from another server, or from a key no longer in MG_SECRET_KEY; {GET_A_TOKEN}",
    )
    UNKNOWN_USER = (
        "TOKEN_USER_UNKNOWN",
        "the bearer token names a user this server does not have",
        f"it was made for another database; {GET_A_TOKEN}",
    )
    DEACTIVATED = (
        "TOKEN_USER_DEACTIVATED",
        "the bearer token's user is deactivated",
        "an administrator deactivated this user, whose tokens no longer work",
    )
    UNKNOWN_MACHINE = (
        "MACHINE_KEY_UNKNOWN",
        "no machine has this machine key",
        "the machine was deleted or the key is mistyped; registerMachine gives a new key",
    )

    @property
    def code(self) -> str:
        """The code in `extensions.code` of a 401 answer."""
        return str(self.value[0])

    @property
    def summary(self) -> str:
        """What is wrong, in a few words."""
        return str(self.value[1])

    @property
    def message(self) -> str:
        """What is wrong and what to do, one sentence."""
        return f"{self.value[1]}: {self.value[2]}"

    @property
    def close_reason(self) -> str:
        """The reason a WebSocket is closed with: the message if it fits the frame."""
        fits = len(self.message.encode()) <= CLOSE_REASON_BYTES
        return self.message if fits else f"{self.summary} ({self.code})"


def user_id_from_token(settings: Settings, token: str) -> str | Refusal:
    """The user a token names if a current key signed it and it has not expired; else
    why not (malformed, signed by another key, expired)."""
    try:
        subject, expires = _signed_claims(settings.secret_keys, token)
    except jwt.InvalidSignatureError:  # before DecodeError, its base
        return Refusal.BAD_SIGNATURE
    except jwt.PyJWTError:
        return Refusal.MALFORMED
    return subject if expires > time.time() else Refusal.EXPIRED


def token_expiry(settings: Settings, token: str) -> float | None:
    """When a user token signed by a current key expires (Unix time); None for anything
    else (a machine key, a forged or malformed token)."""
    try:
        return _signed_claims(settings.secret_keys, token)[1]
    except jwt.PyJWTError:
        return None


# Checking a signature cost a tenth of a small request; a token is sent again and again,
# and what its signature proves never changes, so the proof is kept (expiry is time's,
# checked on every use). Failures raise, and lru_cache keeps no exceptions.
TOKEN_CACHE_SIZE = 4096


@lru_cache(maxsize=TOKEN_CACHE_SIZE)
def _signed_claims(secret_keys: tuple[str, ...], token: str) -> tuple[str, float]:
    for key in secret_keys:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[TOKEN_ALGORITHM],
                options={"require": ["sub", "exp"], "verify_exp": False},
            )
        except jwt.InvalidSignatureError:
            continue
        subject, expires = claims["sub"], claims["exp"]
        if not isinstance(subject, str) or not isinstance(expires, int | float):
            raise jwt.InvalidTokenError("the token's subject or expiry is malformed")
        return subject, float(expires)
    raise jwt.InvalidSignatureError("no current key signed the token")


def new_machine_key() -> str:
    """A fresh machine key; only its hash is stored."""
    return MACHINE_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_machine_key(key: str) -> str:
    """SHA-256 of a machine key: keys are long random secrets, so a fast hash is enough."""
    return hashlib.sha256(key.encode()).hexdigest()


async def roles_by_environment(
    session: AsyncSession, user_id: str
) -> dict[str, frozenset[SecurityRole]]:
    """Every security role the user holds, per environment id."""
    rows = await session.execute(
        select(col(RoleAssignment.environment_id), col(RoleAssignment.role)).where(
            col(RoleAssignment.user_id) == user_id
        )
    )
    return _roles_of((environment_id, role) for environment_id, role in rows)


def _roles_of(
    assignments: Iterable[tuple[str | None, str | None]],
) -> dict[str, frozenset[SecurityRole]]:
    roles: defaultdict[str, set[SecurityRole]] = defaultdict(set)
    for environment_id, role in assignments:
        if environment_id is not None and role is not None:
            roles[environment_id].add(SecurityRole(role))
    return {environment_id: frozenset(held) for environment_id, held in roles.items()}


async def load_viewer(session: AsyncSession, user: User) -> Viewer:
    """The viewer for an active user, with their roles."""
    return Viewer(user=user, roles=await roles_by_environment(session, user.id))


# These run before every request: built once with bound parameters, so SQLAlchemy neither
# rebuilds them nor recomputes their cache keys per request.
_MACHINE_BY_KEY = select(Machine).where(col(Machine.key_hash) == bindparam("key_hash"))
# The user and their roles in one statement.
_USER_WITH_ROLES = (
    select(User, col(RoleAssignment.environment_id), col(RoleAssignment.role))
    .outerjoin(RoleAssignment, col(RoleAssignment.user_id) == col(User.id))
    .where(col(User.id) == bindparam("user_id"))
)


async def authenticate(
    session: AsyncSession, settings: Settings, token: str
) -> Principal | Refusal:
    """The principal a bearer token stands for, or why it stands for nobody."""
    if token.startswith(MACHINE_KEY_PREFIX):
        machine = await session.scalar(_MACHINE_BY_KEY, {"key_hash": hash_machine_key(token)})
        return MachineAgent(machine) if machine is not None else Refusal.UNKNOWN_MACHINE
    user_id = user_id_from_token(settings, token)
    if isinstance(user_id, Refusal):
        return user_id
    rows = (await session.execute(_USER_WITH_ROLES, {"user_id": user_id})).all()
    if not rows:
        return Refusal.UNKNOWN_USER
    if rows[0][0].deactivated:
        return Refusal.DEACTIVATED
    return Viewer(user=rows[0][0], roles=_roles_of((env, role) for _user, env, role in rows))


@dataclass(frozen=True)
class Standing:
    """What decides a user's sessions: whether they are active, and their roles."""

    deactivated: bool
    roles: Mapping[str, frozenset[SecurityRole]]


async def standings(session: AsyncSession, user_ids: Collection[str]) -> dict[str, Standing]:
    """The standing of each of these users that exists, in one statement per 500 users."""
    found: dict[str, Standing] = {}
    ids = sorted(user_ids)
    for start in range(0, len(ids), STANDING_BATCH):
        rows = await session.execute(
            select(
                col(User.id),
                col(User.deactivated),
                col(RoleAssignment.environment_id),
                col(RoleAssignment.role),
            )
            .outerjoin(RoleAssignment, col(RoleAssignment.user_id) == col(User.id))
            .where(col(User.id).in_(ids[start : start + STANDING_BATCH]))
        )
        assignments: defaultdict[str, list[tuple[str | None, str | None]]] = defaultdict(list)
        deactivated: dict[str, bool] = {}
        for user_id, is_deactivated, environment_id, role in rows:
            deactivated[user_id] = is_deactivated
            assignments[user_id].append((environment_id, role))
        for user_id, is_deactivated in deactivated.items():
            found[user_id] = Standing(is_deactivated, _roles_of(assignments[user_id]))
    return found


async def existing_machines(session: AsyncSession, machine_ids: Collection[str]) -> set[str]:
    """Which of these machines still exist (a deleted machine's key stops working)."""
    if not machine_ids:
        return set()
    rows = await session.scalars(select(col(Machine.id)).where(col(Machine.id).in_(machine_ids)))
    return set(rows)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value."""
    token = read_authorization(authorization)
    return None if isinstance(token, Refusal) else token


def read_authorization(authorization: str | None) -> str | Refusal:
    """The token of an `Authorization: Bearer <token>` value, or why there is none: no
    bearer token at all (no header, or another scheme, as RFC 6750 counts it), or a
    `Bearer` without a token."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return Refusal.MISSING
    return token.strip() or Refusal.MALFORMED
