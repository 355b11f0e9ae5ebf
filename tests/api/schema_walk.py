"""Queries built from the schema itself, reaching every object type through every field
that leads to it: the proof that authorization holds on every path of the graph.

`probes` reads the schema (as introspection returns it) and builds, for each root field,
one operation selecting every field of every object below it, to a depth of record
hops. Connection wrappers (`edges`, `node`, `pageInfo`) cost no depth. A root field
that needs ids gets one probe per candidate id; optional id filters are probed too.
A field added tomorrow is in tomorrow's probes without anyone writing a query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    build_client_schema,
    get_introspection_query,
    get_named_type,
    is_non_null_type,
)

INTROSPECTION = get_introspection_query()
SENTINEL = re.compile(r"SENT_([A-Z0-9]+)_")


def sentinel(record: str, part: str) -> str:
    """A text that marks one record's field: `SENT_<record>_<part>`."""
    return f"SENT_{record}_{part}"


def records_in(text: str) -> set[str]:
    """The records whose sentinels appear in a text."""
    return set(SENTINEL.findall(text))


def client_schema(introspection: Mapping[str, Any]) -> GraphQLSchema:
    """The schema as a client sees it through introspection."""
    return build_client_schema(introspection)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Probe:
    """One operation of the walk."""

    name: str
    query: str
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass
class Walk:
    """Builds probes; remembers which object types and fields they reached."""

    schema: GraphQLSchema
    depth: int
    reached: set[str] = field(default_factory=set)

    def probes(self, root: GraphQLObjectType, ids: Mapping[str, Sequence[str]]) -> list[Probe]:
        """The probes of every field of a root type (`ids`: candidate values per argument
        name, e.g. `id` of a Run; see `_arguments`)."""
        keyword = {"Query": "query", "Subscription": "subscription"}[root.name]
        found = []
        for name, root_field in root.fields.items():
            selection = self._selection(get_named_type(root_field.type), self.depth)
            for arguments in _arguments(name, root_field, ids):
                declared = "".join(f"${arg}: {kind}, " for arg, (kind, _v) in arguments.items())
                passed = ", ".join(f"{arg}: ${arg}" for arg in arguments)
                header = f"({declared.rstrip(', ')})" if arguments else ""
                call = f"{name}({passed})" if arguments else name
                found.append(
                    Probe(
                        f"{name}{sorted((a, v) for a, (_k, v) in arguments.items())}",
                        f"{keyword} Walk{header} {{ {call} {selection} }}",
                        {arg: value for arg, (_kind, value) in arguments.items()},
                    )
                )
        return found

    def _selection(self, named: GraphQLNamedType, depth: int) -> str:
        if not isinstance(named, GraphQLObjectType):
            return ""
        self.reached.add(named.name)
        wrapper = _is_wrapper(named)
        parts = []
        for name, child in named.fields.items():
            if any(is_non_null_type(arg.type) for arg in child.args.values()):
                continue  # nested fields take no required arguments today
            inner = get_named_type(child.type)
            if not isinstance(inner, GraphQLObjectType):
                parts.append(name)
                continue
            below = depth if wrapper or _is_wrapper(inner) else depth - 1
            if below >= 0:
                self.reached.add(f"{named.name}.{name}")
                parts.append(f"{name} {self._selection(inner, below)}")
        return "{ " + " ".join(parts or ["__typename"]) + " }"

    def object_fields(self) -> set[str]:
        """Every `Type.field` leading to an object type, reachable from the query root."""
        fields: set[str] = set()
        todo = [self.schema.query_type]
        seen: set[str] = set()
        while todo:
            current = todo.pop()
            if current is None or current.name in seen:
                continue
            seen.add(current.name)
            for name, child in current.fields.items():
                inner = get_named_type(child.type)
                if isinstance(inner, GraphQLObjectType):
                    if current is not self.schema.query_type:
                        fields.add(f"{current.name}.{name}")
                    todo.append(inner)
        return fields


def _is_wrapper(named: GraphQLObjectType) -> bool:
    """A connection or an edge: pagination, not a record."""
    names = set(named.fields)
    return {"edges", "pageInfo"} <= names or {"node", "cursor"} <= names


def _arguments(
    name: str, root_field: GraphQLField, ids: Mapping[str, Sequence[str]]
) -> list[dict[str, tuple[str, Any]]]:
    """Argument sets for a root field: without optional ones, then each candidate value of
    each argument the walk knows (`ids[argument name]`, or `ids[field.argument]`)."""
    required = {arg for arg, spec in root_field.args.items() if is_non_null_type(spec.type)}
    known = {
        arg: ids.get(f"{name}.{arg}", ids.get(arg, ()))
        for arg in root_field.args
        if ids.get(f"{name}.{arg}", ids.get(arg))
    }
    if not required <= known.keys():
        return []  # a required argument the walk cannot fill: reported by the coverage check
    sets: list[dict[str, tuple[str, Any]]] = []
    if not required:
        sets.append({})
    for arg, values in known.items():
        kind = str(root_field.args[arg].type)
        others = {r: (str(root_field.args[r].type), ids_first(known, r)) for r in required - {arg}}
        sets += [{**others, arg: (kind, value)} for value in values]
    return sets


def ids_first(known: Mapping[str, Sequence[str]], arg: str) -> str:
    """The first candidate of an argument (to fill it while another one varies)."""
    return known[arg][0]
