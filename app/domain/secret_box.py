"""Secrets at rest (connection passwords): Fernet under keys derived from MG_SECRET_KEY.

Several keys may be set for rotation: the first encrypts, any of them decrypts.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, MultiFernet

_PURPOSE = b"machine-groups/connection-password/v1:"


def _fernet_key(secret: str) -> bytes:
    # A distinct key per purpose, so the token-signing key is never used raw to encrypt.
    return base64.urlsafe_b64encode(hashlib.sha256(_PURPOSE + secret.encode()).digest())


@lru_cache(maxsize=8)
def _box(secret_keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_fernet_key(secret)) for secret in secret_keys])


def encrypt(secret_keys: tuple[str, ...], plaintext: str) -> str:
    """Encrypt with the first key."""
    return _box(secret_keys).encrypt(plaintext.encode()).decode()


def decrypt(secret_keys: tuple[str, ...], token: str) -> str:
    """Decrypt with whichever listed key encrypted it (cryptography.fernet.InvalidToken if none)."""
    return _box(secret_keys).decrypt(token.encode()).decode()
