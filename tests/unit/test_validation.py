"""Names, descriptions and regions: trimmed, 1-100 / at most 1,000 characters, no controls,
nothing that reorders text, and a name shows something."""

from __future__ import annotations

import pytest

from app.domain.enums import ErrorCode
from app.domain.errors import DomainError
from app.domain.validation import (
    MAX_DESCRIPTION,
    MAX_NAME,
    REORDERING,
    clean_description,
    clean_name,
    name_key,
    region_allows_machines,
)

CONTROLS = ["\x00", "\x07", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]
# Embeddings and overrides U+202A-U+202E, isolates U+2066-U+2069.
BIDI_CONTROLS = [chr(code) for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]]
# Characters that show nothing: format characters (Cf), combining marks alone, blank letters.
INVISIBLE = [
    "\u200b",  # zero width space
    "\u200c",  # zero width non-joiner
    "\u200d",  # zero width joiner
    "\u2060",  # word joiner
    "\ufeff",  # zero width no-break space (byte order mark)
    "\u00ad",  # soft hyphen
    "\u200e",  # left-to-right mark
    "\u180e",  # Mongolian vowel separator
    "\U000e0041",  # tag latin capital letter A
    "\ufe0f",  # variation selector-16
    "\u034f",  # combining grapheme joiner
    "\u3164",  # Hangul filler
    "\u2800",  # Braille pattern blank
]


def refused(error: pytest.ExceptionInfo[DomainError], field: str) -> bool:
    return error.value.code is ErrorCode.VALIDATION and error.value.field == field


# --- names ------------------------------------------------------------------


def test_a_name_is_trimmed() -> None:
    assert clean_name("  Finance bots \t\n") == "Finance bots"


def test_inner_spaces_and_letters_of_any_script_are_kept() -> None:
    assert clean_name("Café  東京 · bots") == "Café  東京 · bots"


@pytest.mark.parametrize("raw", ["", " ", "\t\n ", "\u3000"])
def test_an_empty_name_is_refused(raw: str) -> None:
    with pytest.raises(DomainError) as error:
        clean_name(raw)
    assert refused(error, "name")


def test_a_name_holds_up_to_100_characters() -> None:
    assert MAX_NAME == 100
    assert clean_name("n" * 100) == "n" * 100
    # Characters, not bytes; the limit applies after trimming.
    assert clean_name("é" * 100) == "é" * 100
    assert clean_name("  " + "n" * 100 + "  ") == "n" * 100
    with pytest.raises(DomainError) as error:
        clean_name("n" * 101)
    assert refused(error, "name")


@pytest.mark.parametrize("control", CONTROLS)
def test_a_name_with_a_control_character_is_refused(control: str) -> None:
    with pytest.raises(DomainError) as error:
        clean_name(f"bad{control}name")
    assert refused(error, "name")


def test_the_bidirectional_controls_are_exactly_the_overrides_and_isolates() -> None:
    assert frozenset(BIDI_CONTROLS) == REORDERING


@pytest.mark.parametrize("char", BIDI_CONTROLS)
def test_a_name_with_a_bidirectional_override_or_isolate_is_refused(char: str) -> None:
    with pytest.raises(DomainError) as error:
        clean_name(f"invoice{char}txt.exe")
    assert refused(error, "name")
    assert "reorder" in error.value.message


@pytest.mark.parametrize("char", INVISIBLE)
def test_a_name_of_invisible_characters_only_is_refused(char: str) -> None:
    for raw in (char, char * 3, f"  {char} {char}  ", f"{char}\u200b\u3000"):
        with pytest.raises(DomainError) as error:
            clean_name(raw)
        assert refused(error, "name")
        assert "visible" in error.value.message


@pytest.mark.parametrize(
    "name",
    [
        "\U0001f469\u200d\U0001f4bb bots",  # woman technologist (ZWJ sequence) and a word
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family: a ZWJ sequence alone
        "\u2764\ufe0f",  # a heart with the emoji variation selector
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # flag
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian with a non-joiner
        "\u05d1\u05d5\u05d8\u05d9\u05dd\u200f 2",  # Hebrew with a right-to-left mark
        "e\u0301quipe",  # a combining accent on a letter
        "ad\u200bmin",  # zero-width characters among visible ones are allowed
    ],
)
def test_legitimate_text_with_invisible_characters_is_kept(name: str) -> None:
    assert clean_name(name) == name
    assert clean_description(name) == name


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(DomainError) as error:
        clean_name("bots \ud800")
    assert refused(error, "name")
    with pytest.raises(DomainError) as error:
        clean_description("\udfff")
    assert refused(error, "description")


def test_the_limit_and_the_messages_follow_the_field() -> None:
    assert clean_name("f" * 200, "flowName", 200) == "f" * 200
    with pytest.raises(DomainError) as error:
        clean_name("f" * 201, "flowName", 200)
    assert refused(error, "flowName")
    assert error.value.message == "flowName must be at most 200 characters"
    with pytest.raises(DomainError) as error:
        clean_name("robot\x00", "username", 256)
    assert refused(error, "username")
    assert error.value.message == "username must not contain control characters"


def test_the_error_names_the_field_asked_for() -> None:
    with pytest.raises(DomainError) as error:
        clean_name("", field="input.name")
    assert refused(error, "input.name")


def test_names_are_unique_case_insensitively() -> None:
    assert name_key("Finance Bots") == name_key("FINANCE bots") == "finance bots"
    assert name_key("STRASSE") == name_key("Straße")
    assert name_key("bots 1") != name_key("bots 2")


# --- descriptions -----------------------------------------------------------


def test_a_description_is_trimmed_and_empty_means_none() -> None:
    assert clean_description("  Month-end close  ") == "Month-end close"
    assert clean_description("   ") is None
    assert clean_description("") is None
    assert clean_description(None) is None


def test_a_description_holds_up_to_1000_characters() -> None:
    assert MAX_DESCRIPTION == 1000
    assert clean_description("d" * 1000) == "d" * 1000
    assert clean_description(" " + "d" * 1000 + " ") == "d" * 1000
    with pytest.raises(DomainError) as error:
        clean_description("d" * 1001)
    assert refused(error, "description")


@pytest.mark.parametrize("char", CONTROLS + BIDI_CONTROLS)
def test_a_description_with_a_control_or_bidirectional_character_is_refused(char: str) -> None:
    with pytest.raises(DomainError) as error:
        clean_description(f"line one{char}line two")
    assert refused(error, "description")


def test_a_description_need_not_show_anything() -> None:
    # Only names must: an invisible description is no one's impersonation.
    assert clean_description("\u200b") == "\u200b"


# --- regions ----------------------------------------------------------------


@pytest.mark.parametrize(
    "region", ["gcc", "GCC", "gcc-high", "GCC-High", "dod", "DoD", "china", "China", " CHINA "]
)
def test_machine_features_are_unavailable_in_restricted_regions(region: str) -> None:
    assert region_allows_machines(region) is False


@pytest.mark.parametrize("region", ["us", "US", "eu", "gcc-moderate", "chinatown", "gcchigh"])
def test_machine_features_are_available_elsewhere(region: str) -> None:
    assert region_allows_machines(region) is True
