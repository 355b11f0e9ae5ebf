"""Request JSON is decoded with a bound on its nesting, never a RecursionError."""

from __future__ import annotations

import pytest

from app.graphql.request_json import MAX_JSON_DEPTH, UndecodableJSON, decode_json


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_json_nested_up_to_the_limit_is_decoded() -> None:
    value = decode_json(nested(MAX_JSON_DEPTH))
    for _ in range(MAX_JSON_DEPTH - 1):
        (value,) = value
    assert value == []


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 500, 100_000])
def test_deeper_json_is_refused_whatever_the_depth(depth: int) -> None:
    with pytest.raises(UndecodableJSON, match="nested deeper than"):
        decode_json(nested(depth))
    with pytest.raises(UndecodableJSON, match="nested deeper than"):
        decode_json(('{"a": ' * depth + "1" + "}" * depth).encode())


def test_brackets_inside_strings_do_not_nest() -> None:
    text = '{"query": "' + "{[" * 1000 + '", "n": 1}'
    assert decode_json(text)["n"] == 1


def test_wide_json_is_not_deep() -> None:
    assert len(decode_json("[" + ",".join(["[[1]]"] * 5000) + "]")) == 5000


@pytest.mark.parametrize("text", ["", "{", "1 2", b"\xff\xfe\x00", "scalar"])
def test_text_that_is_not_json_is_refused(text: str | bytes) -> None:
    with pytest.raises(UndecodableJSON, match="not valid JSON"):
        decode_json(text)


def test_a_scalar_is_json() -> None:
    assert decode_json(b"1") == 1
