"""What one running service holds: settings, the database, the clock and the policy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.authz.enforcer import PolicyOutcome, PolicyStore
from app.db.bootstrap import bootstrap, default_environment
from app.db.engine import Database
from app.db.migrate import upgrade_async
from app.db.models import new_id
from app.domain.audit import AuditKind, AuditOutcome, record
from app.domain.caller import Services
from app.domain.clock import Clock, SystemClock
from app.metrics import Metrics
from app.queue.channel import Channels
from app.queue.events import LocalEventBus
from app.queue.hub import Hub
from app.queue.pg_events import PostgresEventBus
from app.queue.snapshots import SharedSnapshots
from app.queue.uptime import record_start
from app.settings import Settings


@dataclass
class AppState:
    """The long-lived parts of the service, built once at start-up."""

    settings: Settings
    db: Database
    services: Services
    bus: LocalEventBus = field(default_factory=LocalEventBus)
    metrics: Metrics = field(default_factory=Metrics)
    snapshots: SharedSnapshots = field(default_factory=SharedSnapshots)
    default_environment_id: str = ""
    # What app/queue works with (waiting, the sweeper, the agent channels).
    hub: Hub = field(init=False)
    channels: Channels = field(init=False)

    def __post_init__(self) -> None:
        self.hub = Hub(self.db, self.bus, self.services.clock, self.settings, self.metrics)
        self.channels = Channels(self.hub)

    @property
    def server_id(self) -> str:
        """This server's life in the database (app/queue/uptime.py)."""
        return self.hub.server_id

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> AppState:
        """Wire the parts; nothing touches the database until `start`."""
        clock = clock or SystemClock()
        policy = PolicyStore.load(settings.policy_dir, clock.now())
        services = Services(settings=settings, clock=clock, policy=policy)
        bus = LocalEventBus() if settings.is_sqlite else PostgresEventBus(settings.database_url)
        db = Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=0,
            pool_timeout=settings.pool_timeout,
        )
        return cls(settings=settings, db=db, services=services, bus=bus)

    async def start(self) -> None:
        """Migrate the database, bootstrap a fresh one, and record this server's start."""
        await upgrade_async(self.settings.database_url)
        try:
            async with self.db.write() as session:
                await bootstrap(session, self.settings.default_region, self.services.clock.now())
        except IntegrityError:
            pass  # another server bootstrapped the same database at the same moment
        async with self.db.read() as session:
            environment = await default_environment(session)
            assert environment is not None  # bootstrap made it
            self.default_environment_id = environment.id
        await self.bus.start()
        # Last: from here on the server answers, and machines get their timeout from now.
        self.hub.server_id = new_id()
        async with self.db.write() as session:
            await record_start(
                session, self.server_id, self.services.clock.now(), self.settings.machine_timeout
            )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction whose events are published once it commits."""
        async with self.hub.transaction() as session:
            yield session

    async def record_policy_outcome(self, outcome: PolicyOutcome) -> None:
        """Put a policy reload (applied or rejected) in the audit trail."""
        async with self.transaction() as session:
            record(
                session,
                at=self.services.clock.now(),
                actor_id=None,
                kind=AuditKind.POLICY_REJECTED if outcome.error else AuditKind.POLICY_APPLIED,
                outcome=AuditOutcome.FAILURE if outcome.error else AuditOutcome.SUCCESS,
                detail={"checksum": outcome.checksum, "error": outcome.error},
            )

    async def ready(self) -> str | None:
        """Why the service cannot serve yet (None when it can): started, database, policy."""
        if not self.default_environment_id:
            return "not started"
        try:
            async with self.db.read() as session:
                await session.execute(text("SELECT 1"))
        except Exception as error:  # any failure to reach the database means not ready
            return f"database unreachable: {type(error).__name__}"
        if self.services.policy.table is None:
            return "no policy loaded"
        return None

    async def stop(self) -> None:
        """Release the database connections."""
        await self.bus.stop()
        await self.db.dispose()
