"""Fixtures for the cluster tests: two real servers on the test's own PostgreSQL database.

These tests are marked `postgres_only`; selected without MG_TEST_POSTGRES_URL they fail
with a message saying so, never skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.cluster_helpers import Cluster, cluster_server, start
from tests.databases import POSTGRES_URL

StartCluster = Callable[..., Cluster]


@pytest.fixture(autouse=True)
def _needs_postgres() -> None:
    """Fail loudly when there is no PostgreSQL server to run on."""
    if POSTGRES_URL is None:
        pytest.fail(
            "tests/cluster run several servers on one PostgreSQL database and need"
            " MG_TEST_POSTGRES_URL (e.g. postgresql+asyncpg://mg@127.0.0.1:55432/postgres;"
            " `bash .ci/postgres.sh start DIR PORT` starts a server and prints it)."
            " To leave them out, select -m 'not postgres_only'.",
            pytrace=False,
        )


@pytest.fixture
def start_cluster(database_url: str, tmp_path: Path) -> Iterator[StartCluster]:
    """`start_cluster(MG_SETTING=value, ...)`: servers A and B, started, on the test's own
    fresh database; stopped at teardown (before the database is dropped)."""
    clusters: list[Cluster] = []

    def make(**settings: str) -> Cluster:
        cluster = Cluster(
            database_url,
            cluster_server("A", tmp_path / "a", database_url, settings),
            cluster_server("B", tmp_path / "b", database_url, settings),
        )
        clusters.append(cluster)
        start(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.http.close()
        for server in (cluster.a, cluster.b):
            server.stop(grace=5)
