"""Publishing broadcast messages of a stream, from any process."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from realtime import keys

log = logging.getLogger("live.realtime")

LUA_DIR = Path(__file__).parent / "lua"
STOCK_INTERVAL_MS = 100


def lua(name: str) -> str:
    """A realtime script with the shared `broadcast` function in front of it."""
    return (LUA_DIR / "broadcast.lua").read_text() + (LUA_DIR / name).read_text()


def now_ms() -> int:
    return int(time.time() * 1000)


class Publisher:
    """Assigns `seq` and fans a message out to every process through Redis."""

    def __init__(self, redis: Redis, history_size: int = 1000) -> None:
        self.redis = redis
        self.history_size = history_size
        # redis-py's Script runs EVALSHA and reloads the script after a NOSCRIPT.
        self._publish: AsyncScript = redis.register_script(lua("publish.lua"))

    async def publish(self, sid: str, type_: str, data: dict[str, Any]) -> int:
        """Broadcast `{"type", "seq", "ts", "data"}` to the stream; returns its seq."""
        seq = await self._publish(
            keys=[keys.seq(sid), keys.history(sid)],
            args=[keys.channel(sid), type_, now_ms(), orjson.dumps(data), self.history_size],
        )
        return int(seq)

    async def last_seq(self, sid: str) -> int:
        raw = await self.redis.get(keys.seq(sid))
        return int(raw) if raw else 0


class StockFeed:
    """Coalesced `stock` messages: call `changed(sid, sku)` after every stock change.

    The first change in an interval is published at once; later ones in the same
    interval leave a dirty flag, and this process retries when the interval ends, so the
    newest value always goes out, at most once per interval per sku, whatever process
    made the change.
    """

    def __init__(
        self,
        redis: Redis,
        stock_key: Callable[[str], str],
        history_size: int = 1000,
        interval_ms: int = STOCK_INTERVAL_MS,
    ) -> None:
        self.redis = redis
        self.stock_key = stock_key
        self.history_size = history_size
        self.interval_ms = interval_ms
        self._script: AsyncScript = redis.register_script(lua("stock.lua"))
        self._retries: dict[tuple[str, str], asyncio.TimerHandle] = {}

    async def _run(self, sid: str, sku: str, mode: str) -> int:
        return int(
            await self._script(
                keys=[
                    keys.stock_gate(sid, sku),
                    keys.stock_dirty(sid, sku),
                    self.stock_key(sid),
                    keys.seq(sid),
                    keys.history(sid),
                ],
                args=[sku, keys.channel(sid), now_ms(), self.history_size, self.interval_ms, mode],
            )
        )

    async def changed(self, sid: str, sku: str) -> None:
        wait_ms = await self._run(sid, sku, "change")
        if wait_ms > 0:
            self._schedule(sid, sku, wait_ms)

    def _schedule(self, sid: str, sku: str, wait_ms: int) -> None:
        if (sid, sku) in self._retries:
            return  # a retry is already due; it will publish the newest value
        loop = asyncio.get_running_loop()
        self._retries[(sid, sku)] = loop.call_later(
            wait_ms / 1000, lambda: asyncio.ensure_future(self._flush(sid, sku))
        )

    async def _flush(self, sid: str, sku: str) -> None:
        self._retries.pop((sid, sku), None)
        try:
            wait_ms = await self._run(sid, sku, "flush")
        except Exception:
            log.exception("stock message for %s/%s failed", sid, sku)
            return
        if wait_ms > 0:
            self._schedule(sid, sku, wait_ms)

    def close(self) -> None:
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
