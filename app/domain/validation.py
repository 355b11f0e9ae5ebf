"""Checks on names, descriptions and regions.

Names and descriptions are shown to other users: in lists, access lists, the audit trail
and logs. None may hold what controls a terminal or breaks a line, nor what reorders
the text around it (a right-to-left override shows "exe.txt" as "txt.exe"), and a name
must show something: one made of zero-width characters looks like no name at all, or
like another user's name. The same rules hold for flow names, connection names and
connection usernames.
"""

from __future__ import annotations

import unicodedata

from app.domain.errors import validation

MAX_NAME = 100
MAX_DESCRIPTION = 1000
RESTRICTED_REGIONS = frozenset({"gcc", "gcc-high", "dod", "china"})

# C0 and C1 controls (NUL, tab, newline, escape, DEL…), the line and paragraph separators.
_CONTROLS = frozenset({"Cc", "Zl", "Zp"})
# Bidirectional embeddings and overrides (U+202A-U+202E) and isolates (U+2066-U+2069):
# they reorder the text after them. The marks (U+200E, U+200F, U+061C) only mark a
# direction, as right-to-left scripts need, and are allowed.
REORDERING = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# What shows nothing by itself: format characters (category Cf: zero-width space and
# joiners, word joiner, byte order mark, soft hyphen, direction marks, tags), spaces,
# and combining marks (variation selectors, the grapheme joiner), which only show on a
# character they combine with. Allowed among visible characters: an emoji sequence
# holds zero-width joiners, Persian words hold non-joiners.
_INVISIBLE = frozenset({"Cf", "Zs", "Mn", "Me"})
# Letters and symbols drawn blank: the Hangul fillers and the blank Braille pattern.
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _check_characters(text: str, field: str) -> None:
    """Refuse controls, line breaks, unpaired surrogates and reordering characters."""
    if text.isascii() and text.isprintable():
        return  # the usual name: nothing below can be in it
    for char in text:
        category = unicodedata.category(char)
        if category == "Cs":  # JSON's "\ud800" carries one; no database can store it
            raise validation(f"{field} must be valid Unicode text (no lone surrogates)", field)
        if category in _CONTROLS:
            raise validation(f"{field} must not contain control characters", field)
        if char in REORDERING:
            raise validation(
                f"{field} must not contain characters that reorder text"
                " (bidirectional overrides or isolates)",
                field,
            )


def _shows_something(text: str) -> bool:
    return any(unicodedata.category(char) not in _INVISIBLE and char not in _BLANK for char in text)


def clean_name(raw: str, field: str = "name", max_length: int = MAX_NAME) -> str:
    """A trimmed name of 1-`max_length` characters with a visible one, and no characters
    that control, break, reorder or hide text (else VALIDATION on `field`)."""
    name = raw.strip()
    if not name:
        raise validation(f"{field} must not be empty", field)
    if len(name) > max_length:
        raise validation(f"{field} must be at most {max_length} characters", field)
    _check_characters(name, field)
    if not name.isascii() and not _shows_something(name):
        raise validation(f"{field} must have a visible character", field)
    return name


def clean_description(raw: str | None, field: str = "description") -> str | None:
    """A trimmed description of at most 1,000 characters with no characters that control,
    break or reorder text; empty means none."""
    if raw is None:
        return None
    text = raw.strip()
    if len(text) > MAX_DESCRIPTION:
        raise validation(f"{field} must be at most {MAX_DESCRIPTION} characters", field)
    _check_characters(text, field)
    return text or None


def name_key(name: str) -> str:
    """The case-insensitive form names are unique by."""
    return name.casefold()


def region_allows_machines(region: str) -> bool:
    """Machine features are unavailable in the GCC, GCC High, DoD and China regions."""
    return region.strip().lower() not in RESTRICTED_REGIONS
