"""Waiting for a moment of the clock the inventory scripts are given (inventory/scripts.py
passes this machine's time), rather than sleeping a guess."""

from __future__ import annotations

import asyncio
import time


async def until_ms(moment_ms: float) -> None:
    """Return once this machine's clock has passed `moment_ms` (ms since the epoch)."""
    await asyncio.sleep(max(0.0, moment_ms - time.time() * 1000) / 1000 + 0.002)
    assert time.time() * 1000 > moment_ms
