"""Turning a domain `Page` into a GraphQL connection type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from app.domain.pages import Page
from app.graphql.types.common import PageInfo

C = TypeVar("C")


def to_connection(
    page: Page[Any], node: Callable[[Any], Any], edge: Callable[..., Any], connection: type[C]
) -> C:
    """Wrap each row with `node`, pair it with its cursor in `edge`, and add the page info."""
    edges = [
        edge(node=node(row), cursor=cursor)
        for row, cursor in zip(page.items, page.cursors, strict=True)
    ]
    end = page.cursors[-1] if page.cursors else None
    return connection(
        edges=edges,  # type: ignore[call-arg]
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=end),
        total_count=page.total_count,
        total_count_is_exact=page.total_exact,
    )
