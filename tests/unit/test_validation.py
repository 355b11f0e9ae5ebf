"""Names, descriptions and regions: trimmed, 1-100 / at most 1,000 characters, no controls."""

from __future__ import annotations

import pytest

from app.domain.enums import ErrorCode
from app.domain.errors import DomainError
from app.domain.validation import (
    MAX_DESCRIPTION,
    MAX_NAME,
    clean_description,
    clean_name,
    name_key,
    region_allows_machines,
)

CONTROLS = ["\x00", "\x07", "\t", "\n", "\r", "\x1b", "\x7f", "\x85"]


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


@pytest.mark.parametrize("control", CONTROLS)
def test_a_description_with_a_control_character_is_refused(control: str) -> None:
    with pytest.raises(DomainError) as error:
        clean_description(f"line one{control}line two")
    assert refused(error, "description")


# --- regions ----------------------------------------------------------------


@pytest.mark.parametrize(
    "region", ["gcc", "GCC", "gcc-high", "GCC-High", "dod", "DoD", "china", "China", " CHINA "]
)
def test_machine_features_are_unavailable_in_restricted_regions(region: str) -> None:
    assert region_allows_machines(region) is False


@pytest.mark.parametrize("region", ["us", "US", "eu", "gcc-moderate", "chinatown", "gcchigh"])
def test_machine_features_are_available_elsewhere(region: str) -> None:
    assert region_allows_machines(region) is True
