"""What the agent tells whoever watches it: one timestamped, flushed line per event."""

from __future__ import annotations

import sys
import time


def _one_line(message: str) -> str:
    return " | ".join(line.strip() for line in message.splitlines() if line.strip())


def say(message: str) -> None:
    """Print one event on stdout, at once."""
    print(f"{time.strftime('%H:%M:%S')} {_one_line(message)}", flush=True)


def complain(message: str) -> None:
    """Print why the agent gives up, on stderr."""
    print(f"error: {_one_line(message)}", file=sys.stderr, flush=True)
