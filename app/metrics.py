"""Prometheus metrics of one running service, in its own registry, scraped at `/metrics`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db.models import MachineGroup, Run
from app.domain.enums import RunStatus

# A claim is one short write transaction; waits on SQLite's write lock show in the tail.
CLAIM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The service's counters, gauges and histograms.

    One registry per service (not the process-wide default), so that several services
    in one process, as in the tests, each count only their own work.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.operations = Counter(
            "mg_graphql_operations",
            "GraphQL operations served, by operation type.",
            ["operation_type"],
            registry=self.registry,
        )
        self.errors = Counter(
            "mg_graphql_errors",
            "GraphQL operations answered with errors, by operation type.",
            ["operation_type"],
            registry=self.registry,
        )
        self.unexpected_errors = Counter(
            "mg_unexpected_errors",
            "Unexpected exceptions: logged with the request id, masked for the client.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "mg_queue_depth",
            "Queued runs per machine group (computed when scraped).",
            ["group_id"],
            registry=self.registry,
        )
        self.claim_latency = Histogram(
            "mg_claim_latency_seconds",
            "Time one claim of a machine's next run takes (its transaction, not the wait).",
            buckets=CLAIM_BUCKETS,
            registry=self.registry,
        )
        self.open_subscriptions = Gauge(
            "mg_open_subscriptions",
            "Subscriptions streaming now, by subscription field.",
            ["subscription"],
            registry=self.registry,
        )

    @asynccontextmanager
    async def subscription(self, name: str) -> AsyncIterator[None]:
        """Count one subscription as open while the block runs."""
        gauge = self.open_subscriptions.labels(name)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    async def scrape(self, session: AsyncSession) -> bytes:
        """Refresh the queue depths with one aggregate query, then render every metric."""
        queued = and_(
            col(Run.group_id) == col(MachineGroup.id), col(Run.status) == RunStatus.QUEUED.value
        )
        rows = await session.execute(
            select(col(MachineGroup.id), func.count(col(Run.id)))
            .outerjoin(Run, queued)
            .group_by(col(MachineGroup.id))
        )
        depths = [(group_id, depth) for group_id, depth in rows]
        # No await from here on: a concurrent scrape never sees the gauge half rebuilt.
        self.queue_depth.clear()
        for group_id, depth in depths:
            self.queue_depth.labels(group_id).set(depth)
        return generate_latest(self.registry)
