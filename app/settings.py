"""Settings read from `MG_*` environment variables, with the spec's defaults."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url
from strawberry.http.websocket_origin import normalize_allowed_origins

from app.private_files import open_private, tighten

# The largest page any deployment may allow (bounds MG_MAX_PAGE_SIZE).
MAX_PAGE_SIZE = 1000
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///machine-groups.db"
# HS256 keys shorter than the hash (32 bytes) weaken every token they sign.
MIN_SECRET_LENGTH = 32


class SettingsError(ValueError):
    """A setting has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything the service, the command line and the tests configure."""

    database_url: str = DEFAULT_DATABASE_URL
    secret_keys: tuple[str, ...] = field(default_factory=tuple)
    policy_dir: Path = Path("policies")
    default_region: str = "us"
    machine_timeout: int = 30
    max_machines_per_group: int = 50
    max_queued_runs: int = 500
    max_queue_seconds: int = 10800
    max_run_seconds: int = 86400
    graphiql: bool = True
    sweep_interval: float = 1.0
    # Hardening (see README "Hardening"): production hides the schema from strangers.
    production: bool = False
    max_query_depth: int = 10
    max_aliases: int = 15
    max_tokens: int = 2000
    max_page_size: int = 100
    max_query_cost: int = 50_000
    max_request_bytes: int = 256 * 1024
    cors_origins: tuple[str, ...] = ()
    ws_init_timeout: float = 10.0
    ws_max_subscriptions: int = 20
    ws_max_message_bytes: int = 256 * 1024
    # Seconds of work a query or mutation may take (waiting in a long poll excluded).
    request_timeout: float = 5.0
    # Connections one server opens to the database (per engine), at most.
    db_pool_size: int = 15

    @property
    def secret_key(self) -> str:
        """The key that signs new tokens: the first of `secret_keys`."""
        return self.secret_keys[0]

    @property
    def pool_timeout(self) -> float:
        """How long a request waits for a database connection before it answers
        SERVICE_BUSY: half its deadline, since past that it would hardly finish in time."""
        return self.request_timeout / 2

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is the embedded SQLite file."""
        return make_url(self.database_url).get_backend_name() == "sqlite"


def _int(env: Mapping[str, str], name: str, default: int, at_most: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    if at_most is not None and value > at_most:
        raise SettingsError(f"{name} must be at most {at_most}, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if raw.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated origins, normalised as browsers send them (`*`: any origin)."""
    raw = [origin.strip() for origin in env.get(name, "").split(",") if origin.strip()]
    try:
        return tuple(sorted(normalize_allowed_origins(raw)))
    except ValueError as error:
        raise SettingsError(f"{name}: {error}") from None


def sqlite_path(database_url: str) -> Path | None:
    """The file behind a SQLite URL, or None for other databases and in-memory SQLite."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def _secret_keys(env: Mapping[str, str], database_url: str, create: bool) -> tuple[str, ...]:
    raw = env.get("MG_SECRET_KEY", "")
    keys = tuple(key.strip() for key in raw.split(",") if key.strip())
    short = [index + 1 for index, key in enumerate(keys) if len(key) < MIN_SECRET_LENGTH]
    if short:
        raise SettingsError(
            f"MG_SECRET_KEY: key(s) {short} are shorter than {MIN_SECRET_LENGTH} characters;"
            " use long random keys, e.g. from `python -c 'import secrets;"
            " print(secrets.token_urlsafe(48))'`"
        )
    if keys:
        return keys
    db_file = sqlite_path(database_url)
    if db_file is None:
        raise SettingsError(
            "MG_SECRET_KEY is required when the database is not a SQLite file: "
            "every server sharing the database must sign tokens with the same key"
        )
    return (_stored_secret(db_file.with_name(db_file.name + ".secret"), create),)


def _stored_secret(path: Path, create: bool) -> str:
    """Read the generated key kept beside the database, creating it on first start (when
    `create`: the server's start, not the command line's)."""
    if not path.exists() and not create:
        raise SettingsError(
            f"no key file at {path.absolute()}, so the server signs its tokens with"
            " MG_SECRET_KEY: set MG_SECRET_KEY here to the same keys"
        )
    if path.exists():
        tighten(path)
        key = path.read_text().strip()
        if len(key) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"{path} holds no usable key (at least {MIN_SECRET_LENGTH} characters);"
                " delete it to generate a new one, or set MG_SECRET_KEY"
            )
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Written to a temporary name first so a crash never leaves a half-written key.
    tmp = path.with_name(path.name + ".tmp")
    with os.fdopen(open_private(tmp), "w") as handle:
        handle.write(key + "\n")
    os.replace(tmp, path)
    return key


def database_url_of(env: Mapping[str, str]) -> str:
    """The database the settings name: MG_DATABASE_URL, or the SQLite file in the
    working directory."""
    return env.get("MG_DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL


def load_settings(env: Mapping[str, str] | None = None, *, create_key: bool = True) -> Settings:
    """Build settings from the environment (or the mapping given). The key file beside a
    SQLite database is generated when missing, unless `create_key` is false (commands
    that must find the server's key, not make one)."""
    env = os.environ if env is None else env
    database_url = database_url_of(env)
    production = env.get("MG_ENV", "").strip().lower() == "production"
    return Settings(
        database_url=database_url,
        secret_keys=_secret_keys(env, database_url, create_key),
        policy_dir=Path(env.get("MG_POLICY_DIR", "").strip() or "policies"),
        default_region=env.get("MG_DEFAULT_REGION", "").strip() or "us",
        machine_timeout=_int(env, "MG_MACHINE_TIMEOUT", 30),
        max_machines_per_group=_int(env, "MG_MAX_MACHINES_PER_GROUP", 50),
        max_queued_runs=_int(env, "MG_MAX_QUEUED_RUNS", 500),
        max_queue_seconds=_int(env, "MG_MAX_QUEUE_SECONDS", 10800),
        max_run_seconds=_int(env, "MG_MAX_RUN_SECONDS", 86400),
        sweep_interval=float(_int(env, "MG_SWEEP_INTERVAL_MS", 1000)) / 1000,
        graphiql=_flag(env, "MG_GRAPHIQL", not production),
        production=production,
        max_query_depth=_int(env, "MG_MAX_QUERY_DEPTH", 10),
        max_aliases=_int(env, "MG_MAX_ALIASES", 15),
        max_tokens=_int(env, "MG_MAX_TOKENS", 2000),
        max_page_size=_int(env, "MG_MAX_PAGE_SIZE", 100, at_most=MAX_PAGE_SIZE),
        max_query_cost=_int(env, "MG_MAX_QUERY_COST", 50_000),
        max_request_bytes=_int(env, "MG_MAX_REQUEST_BYTES", 256 * 1024),
        cors_origins=_origins(env, "MG_CORS_ORIGINS"),
        ws_init_timeout=float(_int(env, "MG_WS_INIT_TIMEOUT", 10)),
        ws_max_subscriptions=_int(env, "MG_WS_MAX_SUBSCRIPTIONS", 20),
        ws_max_message_bytes=_int(env, "MG_WS_MAX_MESSAGE_BYTES", 256 * 1024),
        request_timeout=float(_int(env, "MG_REQUEST_TIMEOUT", 5)),
        db_pool_size=_int(env, "MG_DB_POOL_SIZE", 15),
    )
