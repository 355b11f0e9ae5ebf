"""Hardening without a server: the settings, the cost estimate, the JSON log line."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest
from graphql import GraphQLObjectType, parse, validate

from app.graphql.cost import FIELD_PRICES, LOADED, cost_rule
from app.graphql.schema import schema
from app.logs import JsonFormatter
from app.settings import Settings, SettingsError, load_settings

KEY = "unit-test-secret-key-0123456789abcdef0123456789"
LIMITS = {
    "MG_MAX_QUERY_DEPTH": "max_query_depth",
    "MG_MAX_ALIASES": "max_aliases",
    "MG_MAX_TOKENS": "max_tokens",
    "MG_MAX_PAGE_SIZE": "max_page_size",
    "MG_MAX_QUERY_COST": "max_query_cost",
    "MG_MAX_REQUEST_BYTES": "max_request_bytes",
    "MG_WS_MAX_SUBSCRIPTIONS": "ws_max_subscriptions",
    "MG_WS_MAX_MESSAGE_BYTES": "ws_max_message_bytes",
    "MG_REQUEST_TIMEOUT": "request_timeout",
    "MG_DB_POOL_SIZE": "db_pool_size",
}


def load(**env: str) -> Settings:
    return load_settings({"MG_SECRET_KEY": KEY, **env})


def test_the_hardening_defaults() -> None:
    settings = load()
    assert settings.production is False
    assert (settings.max_query_depth, settings.max_aliases, settings.max_tokens) == (10, 15, 2000)
    assert (settings.max_page_size, settings.max_query_cost) == (100, 50_000)
    assert settings.max_request_bytes == settings.ws_max_message_bytes == 256 * 1024
    assert settings.cors_origins == ()  # no browser front end until one is named
    assert (settings.ws_init_timeout, settings.ws_max_subscriptions) == (10.0, 20)
    # A request waits for a database connection half of its deadline at most.
    assert (settings.request_timeout, settings.pool_timeout, settings.db_pool_size) == (5, 2.5, 15)


@pytest.mark.parametrize("variable", sorted(LIMITS))
def test_each_limit_is_read_from_its_variable(variable: str) -> None:
    assert getattr(load(**{variable: " 42 "}), LIMITS[variable]) == 42
    with pytest.raises(SettingsError, match=variable):
        load(**{variable: "0"})


def test_the_init_timeout_is_read_in_seconds() -> None:
    assert load(MG_WS_INIT_TIMEOUT="3").ws_init_timeout == 3.0


def test_the_page_size_cap_has_a_ceiling() -> None:
    assert load(MG_MAX_PAGE_SIZE="1000").max_page_size == 1000
    with pytest.raises(SettingsError, match="at most 1000"):
        load(MG_MAX_PAGE_SIZE="1001")


@pytest.mark.parametrize("value", ["production", " Production "])
def test_production_mode(value: str) -> None:
    settings = load(MG_ENV=value)
    assert settings.production is True
    assert settings.graphiql is False


def test_cors_origins_are_normalised_as_browsers_send_them() -> None:
    settings = load(MG_CORS_ORIGINS=" https://App.example.com:443, http://localhost:5173 ,")
    assert settings.cors_origins == ("http://localhost:5173", "https://app.example.com")
    for bad in ("app.example.com", "https://app.example.com/path"):
        with pytest.raises(SettingsError, match="MG_CORS_ORIGINS"):
            load(MG_CORS_ORIGINS=bad)


def errors(document: str, max_cost: int, variables: dict[str, Any] | None = None) -> list[str]:
    """What the cost rule alone says about a document (page cap 100)."""
    rule = cost_rule(max_cost, 100, variables)
    return [error.message for error in validate(schema._schema, parse(document), [rule])]


def cost_of(document: str, variables: dict[str, Any] | None = None) -> int:
    """The estimated cost: the smallest limit the document passes."""
    low, high = 0, 10**9
    while low < high:
        middle = (low + high) // 2
        if errors(document, middle, variables):
            low = middle + 1
        else:
            high = middle
    return low


@pytest.mark.parametrize(
    ("document", "variables", "expected"),
    [
        # Every field counts once per object it resolves on.
        ("{ me { name } }", None, 2),
        # A connection's own fields count once; its edges hold `first` nodes.
        ("{ machineGroups(first: 10) { totalCount edges { node { name } } } }", None, 23),
        # Omitted `first` is the field's default, 50; so is null.
        ("{ machineGroups { edges { node { name } } } }", None, 102),
        ("{ machineGroups(first: null) { edges { node { name } } } }", None, 102),
        # Variables are resolved, and a missing one falls back to its default.
        ("query($n: Int) { machines(first: $n) { edges { node { id } } } }", {"n": 3}, 8),
        ("query($n: Int = 4) { machines(first: $n) { edges { node { id } } } }", None, 10),
        # Other lists count as 50 items; lists with `first` as that many (and a group's
        # machines and queue are loaded: LOADED each).
        ('{ machineGroup(id: "g") { machines { id } queue(first: 2) { id } } }', None, 93),
        # Fields read from the database are priced per item: a page of 100 runs with
        # their positions and estimates is cheap, 100 groups' queues of 100 are not.
        (
            "{ runs(first: 100) { edges { node { queuePosition estimatedStartAt } } } }",
            None,
            2 + 100 * (1 + 2 * LOADED),
        ),
        (
            "{ runs(first: 100) { edges { node { group {"
            " queue(first: 100) { queuePosition estimatedStartAt } } } } } }",
            None,
            2 + 100 * (1 + 2 * LOADED + 100 * 2 * LOADED),
        ),
        ('{ run(id: "r") { connection { id } } }', None, 1 + LOADED + 1),
        # Lists at the top count as 50 items too.
        ("{ connections { id } }", None, 51),
        # Fragments count where they are spread; __typename and introspection are free.
        ("fragment F on User { name } { me { ...F ...F __typename } }", None, 3),
        ("{ __schema { types { fields { name } } } }", None, 0),
    ],
)
def test_the_cost_estimate(document: str, variables: dict[str, Any] | None, expected: int) -> None:
    assert cost_of(document, variables) == expected


def test_every_field_that_awaits_a_read_has_a_price() -> None:
    """A field with an async resolver reads something for each item it resolves on: it
    must be priced, and every price must name a field of the schema."""
    graphql_schema = schema._schema
    roots = {graphql_schema.query_type, graphql_schema.mutation_type}
    roots.add(graphql_schema.subscription_type)
    fields = {
        f"{name}.{field_name}": field
        for name, named in graphql_schema.type_map.items()
        if isinstance(named, GraphQLObjectType) and named not in roots
        for field_name, field in named.fields.items()
    }
    awaiting = set()
    for name, field in fields.items():
        definition = field.extensions.get("strawberry-definition")
        resolver = definition.base_resolver if definition is not None else None
        if resolver is not None and resolver.is_async:
            awaiting.add(name)
    assert awaiting, "no async resolver found: the check itself is broken"
    assert sorted(awaiting - set(FIELD_PRICES)) == []
    assert sorted(set(FIELD_PRICES) - set(fields)) == []


def test_fragments_that_expand_exponentially_stop_the_walk() -> None:
    # 2^30 spreads of a free field: the walk gives up rather than visit them all.
    fragments = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(30))
    document = f"{{ ...F0 }} {fragments} fragment F30 on Query {{ __typename }}"
    assert errors(document, 1000)


def test_a_page_over_the_cap_is_reported_once_per_argument() -> None:
    assert errors("{ machineGroups(first: 101) { totalCount } }", 10**6) == [
        "first must be between 0 and 100"
    ]
    assert errors("query($n: Int) { runs(first: $n) { totalCount } }", 10**6, {"n": -1}) == [
        "first must be between 0 and 100"
    ]


def test_a_log_line_is_one_json_object_with_the_extras() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "app.x", logging.ERROR, __file__, 1, "failed %s", ("here",), None
        )
        record.exc_info = sys.exc_info()
    record.request_id = "abc"
    record.path = "/graphql"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed here"
    assert (entry["level"], entry["logger"], entry["request_id"]) == ("error", "app.x", "abc")
    assert entry["path"] == "/graphql"
    assert "ValueError: boom" in entry["exception"]
