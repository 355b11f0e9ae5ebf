"""The JSON of requests and WebSocket messages, decoded with a bound on its nesting.

Python's JSON decoder recurses once per level and raises RecursionError (a server error)
somewhere past a few hundred levels, depending on how deep the stack already is; what
it does decode is then walked recursively again by variable coercion, the JSON scalar
and serialisation. A fixed bound, far below all of them, makes a deep document a client
error at the door, whatever the stack.
"""

from __future__ import annotations

import json
from typing import Any

# Deeper than any request or run input needs ({"variables": {"input": {"inputs": ...}}}
# spends 4 levels), and shallow enough for every recursive step after decoding.
MAX_JSON_DEPTH = 64


class UndecodableJSON(json.JSONDecodeError):
    """Text that is not JSON, not UTF-8, or nested deeper than MAX_JSON_DEPTH.

    A JSONDecodeError, so Strawberry's WebSocket handler treats it as a message that is
    not JSON (it closes the socket with 4400).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, "", 0)
        self.message = message


def decode_json(data: str | bytes) -> Any:
    """The value of a JSON text nested at most MAX_JSON_DEPTH deep, or UndecodableJSON."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise _too_deep() from None
    except ValueError:  # JSONDecodeError, or UnicodeDecodeError on bytes
        raise UndecodableJSON("the request is not valid JSON") from None
    if _may_be_too_deep(data) and _deeper_than(value, MAX_JSON_DEPTH):
        raise _too_deep()
    return value


def _too_deep() -> UndecodableJSON:
    return UndecodableJSON(f"the request's JSON is nested deeper than {MAX_JSON_DEPTH} levels")


def _may_be_too_deep(data: str | bytes) -> bool:
    """Whether the text opens enough arrays and objects to be too deep (counted in C, so
    the usual small request is not walked at all; brackets inside strings count too)."""
    if isinstance(data, bytes):
        return data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH
    return data.count("[") + data.count("{") > MAX_JSON_DEPTH


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` deep (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
