"""An estimate of what a query costs, and the page-size cap, checked before it executes.

Strawberry limits depth, aliases and tokens, but none of them bounds the work a document
asks for: `machineGroups(first: 100) { edges { node { machines { ... } } } }` is shallow
and short yet resolves thousands of fields. The estimate adds up every field's price once
per object it is resolved on: a field with a `first` argument multiplies what is under it
by that page size (a connection's `edges` list is that page, not a further multiplier),
and any other list by DEFAULT_LIST_SIZE. Variables are resolved, so `first: $n` counts too.

A field is priced by what it reads (FIELD_PRICES, keyed by "Type.field"): a plain value
the object already holds costs 1 (a few microseconds of graphql-core's time). A field
read through a per-request DataLoader (a run's group, a group's machines, a run's queue
position) sends one statement per level of the query whatever the list's length, but each
item still costs an awaited resolver, a task and a cache lookup: measured at 20 to 40
plain fields, it is priced LOADED. No field sends a statement of its own per item. So
`runs(first: 100) { edges { node { group { queue(first: 100) { queuePosition
estimatedStartAt } } } } }`, 10,000 positions and estimates, is refused, while a page
of 100 runs with theirs costs about 4,000.
Fields of the root types resolve once per alias (MG_MAX_ALIASES bounds them) and are not
priced; tests/unit/test_hardening.py checks that every other field with a resolver that
awaits anything has a price here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
    Undefined,
    ValidationRule,
    VariableNode,
    Visitor,
    get_named_type,
    get_nullable_type,
    is_list_type,
    validate,
    value_from_ast,
    value_from_ast_untyped,
    visit,
)
from strawberry.extensions import SchemaExtension

DEFAULT_LIST_SIZE = 50  # what a list without `first` is assumed to hold (a page's default)
LOADED = 20  # one item of a field answered through a DataLoader
FIELD_PRICES = {
    **dict.fromkeys(
        (
            "AuditEntry.actor",
            "AuditEntry.subjectUser",
            "Connection.owner",
            "Connection.machine",
            "Connection.group",
            "Machine.environment",
            "Machine.owner",
            "Machine.myAccess",
            "Machine.status",  # its group's maintenance flag
            "Machine.group",
            "Machine.currentRun",
            "MachineGroup.environment",
            # A page of groups reads these facts in its own statement, but a group reached
            # from a run or a machine loads them one loader call each.
            "MachineGroup.owner",
            "MachineGroup.myAccess",
            "MachineGroup.machineCount",
            "MachineGroup.runningCount",
            "MachineGroup.queuedCount",
            "MachineGroup.hasDeactivatedUsers",
            "MachineGroup.machines",
            "MachineGroup.access",
            "MachineGroup.queue",
            "Run.group",
            "Run.machine",
            "Run.connection",
            "Run.startedBy",
            "Run.queuePosition",
            "Run.estimatedStartAt",
            "User.securityRoles",
        ),
        LOADED,
    ),
}
DEFAULT_PAGE_SIZE = 50
# Free nodes (__typename, fragment spreads) cost nothing but still take walking: the walk
# stops past this many nodes, whatever they cost.
WALK_FACTOR, WALK_SLACK = 4, 1000


def _field_def(parent: GraphQLNamedType | None, name: str) -> GraphQLField | None:
    if isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
        field: GraphQLField | None = parent.fields.get(name)
        return field
    return None


class _Estimate:
    """Walks one operation, adding up its cost and reporting `first` out of range."""

    def __init__(self, rule: QueryCostRule, variables: Mapping[str, Any]) -> None:
        self.rule = rule
        self.variables = variables
        self.cost = 0
        # Nodes visited: fragments spread many times can make a short document expand
        # exponentially, so the walk itself stops once it has seen more than the budget.
        self.visited = 0

    @property
    def over(self) -> bool:
        walk_limit = WALK_FACTOR * self.rule.max_cost + WALK_SLACK
        return self.cost > self.rule.max_cost or self.visited > walk_limit

    def walk(
        self,
        selections: Sequence[SelectionNode],
        parent: GraphQLNamedType | None,
        multiplier: int,
        pending: int | None,
        fragments: frozenset[str],
    ) -> None:
        for selection in selections:
            if self.over:
                return
            self.visited += 1
            if isinstance(selection, FieldNode):
                self._field(selection, parent, multiplier, pending, fragments)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.rule.schema_type(condition.name.value) if condition else parent
                self.walk(
                    selection.selection_set.selections, target, multiplier, pending, fragments
                )
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.rule.context.get_fragment(name)
                if fragment is None or name in fragments:
                    continue  # unknown or cyclic: other rules report it
                target = self.rule.schema_type(fragment.type_condition.name.value)
                self.walk(
                    fragment.selection_set.selections,
                    target,
                    multiplier,
                    pending,
                    fragments | {name},
                )

    def _field(
        self,
        node: FieldNode,
        parent: GraphQLNamedType | None,
        multiplier: int,
        pending: int | None,
        fragments: frozenset[str],
    ) -> None:
        name = node.name.value
        if name.startswith("__"):
            return  # introspection and __typename: served from memory
        field = _field_def(parent, name)
        if field is None or parent is None:
            return  # unknown fields are reported by the standard rules
        self.cost += multiplier * FIELD_PRICES.get(f"{parent.name}.{name}", 1)
        page = self._page_size(node, field)
        if node.selection_set is None:
            return
        if is_list_type(get_nullable_type(field.type)):
            # A list holds its `first`, or the page its connection asked for, or 50.
            size = (
                page if page is not None else pending if pending is not None else DEFAULT_LIST_SIZE
            )
            inner, pending_inside = multiplier * max(size, 1), None
        else:
            # A connection: its own fields resolve once; its `edges` list holds the page.
            inner, pending_inside = multiplier, page
        self.walk(
            node.selection_set.selections,
            get_named_type(field.type),
            inner,
            pending_inside,
            fragments,
        )

    def _page_size(self, node: FieldNode, field: GraphQLField) -> int | None:
        """The `first` a field asks for (its default when omitted); None without `first`."""
        argument = field.args.get("first")
        if argument is None:
            return None
        given = next((arg for arg in node.arguments or () if arg.name.value == "first"), None)
        if given is None:
            value = argument.default_value
        else:
            value = value_from_ast(given.value, argument.type, self.variables)  # type: ignore[arg-type]
            if value is Undefined:  # a variable not sent, or a bad literal others report
                value = argument.default_value
        if value is None or value is Undefined:
            return DEFAULT_PAGE_SIZE
        if not isinstance(value, int) or isinstance(value, bool):
            return self.rule.max_page_size  # not an Int: the standard rules report it
        if not 0 <= value <= self.rule.max_page_size:
            self.rule.report_error(
                GraphQLError(
                    f"first must be between 0 and {self.rule.max_page_size}",
                    given or node,
                    extensions={"code": "VALIDATION"},
                )
            )
            return self.rule.max_page_size
        return value


class QueryCostRule(ValidationRule):
    """Refuses operations whose estimated cost is over `max_cost`, or pages over the cap."""

    max_cost = 50_000
    max_page_size = 100
    variables: Mapping[str, Any] = {}

    def schema_type(self, name: str) -> GraphQLNamedType | None:
        """A named type of the schema."""
        return self.context.schema.get_type(name)

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args: object) -> object:
        """Estimate one operation of the document."""
        root = self.context.schema.get_root_type(node.operation)
        defaults = {
            definition.variable.name.value: value_from_ast_untyped(definition.default_value)
            for definition in node.variable_definitions or ()
            if definition.default_value is not None
        }
        estimate = _Estimate(self, {**defaults, **self.variables})
        estimate.walk(node.selection_set.selections, root, 1, None, frozenset())
        if estimate.over:
            self.report_error(
                GraphQLError(
                    f"the query's estimated cost exceeds the limit of {self.max_cost}"
                    " (lists count by their `first`, else 50 items; fields read from the"
                    f" database count {LOADED} or more per item): ask for smaller pages"
                    " or fewer fields",
                    node,
                    extensions={"code": "QUERY_TOO_COSTLY"},
                )
            )
        return Visitor.SKIP


class QueryCostLimiter(SchemaExtension):
    """Checks `QueryCostRule`, with this request's variables, after the other rules.

    The other rules' outcome depends on the document only and is cached (ValidationCache,
    listed before this extension); this rule reads the variables, so it runs on its own,
    visiting the document once.
    """

    def __init__(self, max_cost: int, max_page_size: int) -> None:
        self.max_cost = max_cost
        self.max_page_size = max_page_size

    def on_validate(self) -> Iterator[None]:
        """Add the cost rule's errors to a document the other rules accepted."""
        context = self.execution_context
        document = context.graphql_document
        if not context.pre_execution_errors and document is not None and context.query:
            variables = context.variables or {}
            # The verdict depends on the document and the variables given as `first` only:
            # an agent's claim or a page with a new cursor reuses it.
            page_values = _page_values(context.query, document, variables)
            key = (self.max_cost, self.max_page_size, context.query, page_values)
            errors = _VERDICTS.get(key)
            if errors is None:
                rule = cost_rule(self.max_cost, self.max_page_size, variables)
                errors = _remember(
                    _VERDICTS, key, validate(context.schema._schema, document, [rule])
                )
            if errors:
                context.pre_execution_errors = list(errors)
        yield


VERDICT_CACHE_SIZE = 1000
# The cost rule's errors per (limits, document, values of its `first` variables): module
# level, as Strawberry makes a new extension instance for every request.
_VERDICTS: dict[tuple[int, int, str, str], list[GraphQLError]] = {}
_PAGE_VARIABLES: dict[str, frozenset[str]] = {}
K = TypeVar("K")
V = TypeVar("V")


def _remember(cache: dict[K, V], key: K, value: V) -> V:
    """Store `value`, dropping the oldest entry once the cache holds more than its size."""
    cache[key] = value
    if len(cache) > VERDICT_CACHE_SIZE:
        del cache[next(iter(cache))]
    return value


class _PageVariableNames(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_argument(self, node: ArgumentNode, *_args: object) -> None:
        if node.name.value == "first" and isinstance(node.value, VariableNode):
            self.names.add(node.value.name.value)


def _page_values(query: str, document: DocumentNode, variables: Mapping[str, Any]) -> str:
    """The values of the variables a document passes as `first`, as a cache key part."""
    names = _PAGE_VARIABLES.get(query)
    if names is None:
        finder = _PageVariableNames()
        visit(document, finder)
        names = _remember(_PAGE_VARIABLES, query, frozenset(finder.names))
    return repr(sorted((name, repr(variables.get(name))) for name in names))


def cost_rule(
    max_cost: int, max_page_size: int, variables: Mapping[str, Any] | None = None
) -> type[QueryCostRule]:
    """The rule with its limits and one request's variables bound (graphql-core builds
    rules from classes, so the per-request values travel as class attributes)."""
    attributes = {
        "max_cost": max_cost,
        "max_page_size": max_page_size,
        "variables": dict(variables or {}),
    }
    return type("BoundQueryCostRule", (QueryCostRule,), attributes)
