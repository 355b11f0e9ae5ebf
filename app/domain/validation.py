"""Checks on names, descriptions and regions."""

from __future__ import annotations

import unicodedata

from app.domain.errors import validation

MAX_NAME = 100
MAX_DESCRIPTION = 1000
RESTRICTED_REGIONS = frozenset({"gcc", "gcc-high", "dod", "china"})


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)


def clean_name(raw: str, field: str = "name") -> str:
    """A trimmed name of 1-100 characters without control characters."""
    name = raw.strip()
    if not name:
        raise validation("name must not be empty", field)
    if len(name) > MAX_NAME:
        raise validation(f"name must be at most {MAX_NAME} characters", field)
    if _has_control_characters(name):
        raise validation("name must not contain control characters", field)
    return name


def clean_description(raw: str | None, field: str = "description") -> str | None:
    """A trimmed description of at most 1,000 characters; empty means none."""
    if raw is None:
        return None
    text = raw.strip()
    if len(text) > MAX_DESCRIPTION:
        raise validation(f"description must be at most {MAX_DESCRIPTION} characters", field)
    if _has_control_characters(text):
        raise validation("description must not contain control characters", field)
    return text or None


def name_key(name: str) -> str:
    """The case-insensitive form names are unique by."""
    return name.casefold()


def region_allows_machines(region: str) -> bool:
    """Machine features are unavailable in the GCC, GCC High, DoD and China regions."""
    return region.strip().lower() not in RESTRICTED_REGIONS
