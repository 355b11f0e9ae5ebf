"""User bearer tokens: signed, expiring, verified against every listed key; header parsing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from app.db.models import User
from app.domain.identity import (
    DEFAULT_TOKEN_LIFETIME,
    MACHINE_KEY_PREFIX,
    TOKEN_ALGORITHM,
    Refusal,
    bearer_token,
    hash_machine_key,
    mint_token,
    new_machine_key,
    read_authorization,
    user_id_from_token,
)
from app.settings import Settings

OLD_KEY = "old-signing-key-0123456789abcdef0123456789abcdef"
NEW_KEY = "new-signing-key-0123456789abcdef0123456789abcdef"
DANA = User(id="user-dana", name="dana", name_key="dana")


def keys(*secret_keys: str) -> Settings:
    return Settings(secret_keys=secret_keys)


def now() -> datetime:
    # Expiry is checked against the real time, so tokens are minted relative to it.
    return datetime.now(UTC)


def test_a_minted_token_names_its_user() -> None:
    settings = keys(NEW_KEY)
    token = mint_token(settings, DANA, now())
    assert user_id_from_token(settings, token) == "user-dana"


def test_a_token_is_a_signed_jwt_valid_for_thirty_days() -> None:
    moment = now().replace(microsecond=0)
    token = mint_token(keys(NEW_KEY), DANA, moment)
    claims = jwt.decode(token, NEW_KEY, algorithms=[TOKEN_ALGORITHM])
    assert claims["sub"] == "user-dana"
    assert claims["exp"] - claims["iat"] == DEFAULT_TOKEN_LIFETIME.total_seconds() == 30 * 86400


def test_the_first_key_signs() -> None:
    token = mint_token(keys(NEW_KEY, OLD_KEY), DANA, now())
    assert user_id_from_token(keys(NEW_KEY), token) == "user-dana"
    assert user_id_from_token(keys(OLD_KEY), token) is Refusal.BAD_SIGNATURE


def test_a_token_of_a_rotated_out_key_works_while_that_key_is_still_listed() -> None:
    token = mint_token(keys(OLD_KEY), DANA, now())
    assert user_id_from_token(keys(NEW_KEY, OLD_KEY), token) == "user-dana"


def test_a_token_of_a_rotated_out_key_stops_working_once_the_key_is_gone() -> None:
    token = mint_token(keys(OLD_KEY), DANA, now())
    assert user_id_from_token(keys(NEW_KEY), token) is Refusal.BAD_SIGNATURE


def test_an_expired_token_is_refused_whatever_key_signed_it() -> None:
    expired = mint_token(keys(NEW_KEY), DANA, now() - timedelta(days=31))
    assert user_id_from_token(keys(NEW_KEY), expired) is Refusal.EXPIRED
    assert user_id_from_token(keys(OLD_KEY, NEW_KEY), expired) is Refusal.EXPIRED
    short = mint_token(keys(NEW_KEY), DANA, now() - timedelta(hours=2), timedelta(hours=1))
    assert user_id_from_token(keys(NEW_KEY), short) is Refusal.EXPIRED
    fresh = mint_token(keys(NEW_KEY), DANA, now() - timedelta(days=29))
    assert user_id_from_token(keys(NEW_KEY), fresh) == "user-dana"


def test_a_token_accepted_before_is_refused_once_it_expires() -> None:
    # Verified signatures are remembered; the expiry must still be checked on every use.
    settings = keys(NEW_KEY)
    token = mint_token(settings, DANA, now(), timedelta(seconds=1))
    assert user_id_from_token(settings, token) == "user-dana"
    expires = jwt.decode(token, NEW_KEY, algorithms=[TOKEN_ALGORITHM])["exp"]
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    assert user_id_from_token(settings, token) is Refusal.EXPIRED


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-token",
        "a.b.c",
        # Signed with the right key but without an expiry, or without a subject.
        jwt.encode({"sub": "user-dana"}, NEW_KEY, algorithm=TOKEN_ALGORITHM),
        jwt.encode({"exp": 4102444800}, NEW_KEY, algorithm=TOKEN_ALGORITHM),
        # Unsigned ("alg": "none") tokens are never accepted.
        jwt.encode({"sub": "user-dana", "exp": 4102444800}, key="", algorithm="none"),
    ],
)
def test_malformed_or_incomplete_tokens_are_refused(token: str) -> None:
    assert user_id_from_token(keys(NEW_KEY), token) is Refusal.MALFORMED


def test_a_tampered_token_is_refused() -> None:
    token = mint_token(keys(NEW_KEY), DANA, now())
    header, _payload, signature = token.split(".")
    other = mint_token(keys(NEW_KEY), User(id="user-eve", name="eve", name_key="eve"), now())
    forged = ".".join([header, other.split(".")[1], signature])
    assert user_id_from_token(keys(NEW_KEY), forged) is Refusal.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        ("Bearer mgk_machine-key", "mgk_machine-key"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer    ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearerabc", None),
        ("abc", None),
    ],
)
def test_bearer_token_reads_the_authorization_header(
    header: str | None, expected: str | None
) -> None:
    assert bearer_token(header) == expected


@pytest.mark.parametrize(
    ("header", "refusal"),
    [
        (None, Refusal.MISSING),
        ("", Refusal.MISSING),
        # Another scheme is no bearer token at all (RFC 6750 section 3.1).
        ("Basic dXNlcjpwYXNz", Refusal.MISSING),
        ("Bearer", Refusal.MALFORMED),
        ("Bearer    ", Refusal.MALFORMED),
    ],
)
def test_an_authorization_header_without_a_token_says_which_case(
    header: str | None, refusal: Refusal
) -> None:
    assert read_authorization(header) is refusal


@pytest.mark.parametrize("refusal", list(Refusal))
def test_every_refusal_fits_a_header_and_a_close_frame(refusal: Refusal) -> None:
    # error_description allows printable ASCII but for the double quote and backslash.
    assert all(" " <= char <= "~" and char not in '"\\' for char in refusal.message)
    assert len(refusal.close_reason.encode()) <= 123  # RFC 6455's limit on a close reason
    assert refusal.code.isupper() and refusal.message[0].islower()


def test_machine_keys_are_random_prefixed_and_stored_hashed() -> None:
    first, second = new_machine_key(), new_machine_key()
    assert first != second
    assert first.startswith(MACHINE_KEY_PREFIX)
    assert len(first) > 40
    assert hash_machine_key(first) == hash_machine_key(first)
    assert hash_machine_key(first) != hash_machine_key(second)
    assert first not in hash_machine_key(first)
