"""How lists count their rows: exactly up to COUNT_LIMIT, then "more than COUNT_LIMIT".

A list's `totalCount` is the number of rows the viewer may see. Counting them exactly
reads every one of them: for a viewer who sees a growing history, a cost that grows with
it on every page. No counter can hold it either: what a viewer sees depends on their
grants, their groups and their administered environments, and a run's queue, status and
starter, so a counter per viewer would change with every run. So every count reads at
most COUNT_LIMIT + 1 rows (the statements stop there), and a list says whether its count
is exact (`totalCountIsExact`); past the limit, `totalCount` is COUNT_LIMIT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ScalarSelect, Select, func, literal, select, union_all

COUNT_LIMIT = 1000


def bounded(
    model: Any, *where: Any, rows: Select[Any] | None = None, limit: int = COUNT_LIMIT
) -> ScalarSelect[int]:
    """How many rows of `model` match `where` (or `rows` yields), reading at most
    `limit` + 1 of them."""
    if rows is None:
        rows = select(literal(1)).select_from(model).where(*where)
    sample = rows.limit(limit + 1).subquery()
    return select(func.count()).select_from(sample).scalar_subquery()


@dataclass(frozen=True, slots=True)
class Total:
    """A list's count as the API shows it."""

    count: int
    exact: bool

    @classmethod
    def of(cls, counted: int) -> Total:
        """From a bounded count (which may add several bounded parts, each at most
        COUNT_LIMIT + 1)."""
        if counted > COUNT_LIMIT:
            return cls(COUNT_LIMIT, False)
        return cls(counted, True)


def bounded_union(parts: Sequence[Select[Any]], limit: int = COUNT_LIMIT) -> ScalarSelect[int]:
    """How many rows the disjoint `parts` yield together, reading at most `limit` + 1 of
    them in all: the parts are read one after the other, and reading stops at the limit
    (a sum of bounded counts would read up to the limit in each)."""
    if len(parts) == 1:
        return bounded(None, rows=parts[0], limit=limit)
    heads = [select(literal(1)).select_from(part.limit(limit + 1).subquery()) for part in parts]
    rows = select(literal(1)).select_from(union_all(*heads).subquery())
    return bounded(None, rows=rows, limit=limit)
