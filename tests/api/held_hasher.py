"""The live server's Argon2id (it runs in this process), made observable: each hash and
check is counted, and the next one can be held to see what the server does meanwhile."""

from __future__ import annotations

import threading

from argon2 import PasswordHasher


class HeldHasher:
    """Argon2id whose next hash or check, once `hold` is called, waits until `let_go`;
    the calls after it run freely."""

    def __init__(self, real: PasswordHasher) -> None:
        self.real = real
        self.holding = threading.Event()  # a held call is waiting
        self._free = threading.Event()
        self._free.set()
        self._hold_next = False
        self._lock = threading.Lock()
        self.hashes = 0
        self.checks = 0

    def hold(self) -> None:
        """The next hash or check waits for `let_go`."""
        with self._lock:
            self._hold_next = True
            self._free.clear()

    def let_go(self) -> None:
        """Let the held call finish."""
        self._free.set()

    def _maybe_wait(self) -> None:
        with self._lock:
            held, self._hold_next = self._hold_next, False
        if held:
            self.holding.set()
            assert self._free.wait(30), "the test never let the call go"

    def hash(self, password: str) -> str:
        """The real hash."""
        self.hashes += 1
        self._maybe_wait()
        return self.real.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """The real check."""
        self.checks += 1
        self._maybe_wait()
        return self.real.verify(password_hash, password)
