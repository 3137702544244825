"""The clock our scripts and records use, and replies decoded the same way whatever
the client's `decode_responses`."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (the `ts`/`*_at` of every record)."""
    return int(time.time() * 1000)


def text(value: object) -> str:
    """A Redis reply as str, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)
