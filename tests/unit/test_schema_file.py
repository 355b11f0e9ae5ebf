"""`schema.graphql` is generated from the code; this fails when it is stale."""

from __future__ import annotations

from app.graphql.schema import schema_sdl
from tests.conftest import REPO


def test_schema_graphql_matches_the_code() -> None:
    committed = (REPO / "schema.graphql").read_text()
    assert committed == schema_sdl(), (
        "schema.graphql is stale: run `machine-groups schema -o schema.graphql`"
    )
