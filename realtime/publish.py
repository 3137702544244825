"""Publishing broadcast messages of a stream, from any process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from realtime import keys
from rediskit.codec import now_ms
from rediskit.lua import Script

log = logging.getLogger("live.realtime")

LUA_DIR = Path(__file__).parent / "lua"
STOCK_INTERVAL_MS = 100


def lua(name: str, broadcast: bool = True) -> Script:
    """A realtime script, most with the shared `broadcast` function in front of it."""
    return Script(LUA_DIR, name, head=("broadcast.lua",) if broadcast else ())


PUBLISH = lua("publish.lua")
PUBLISH_LIVE = lua("publish_live.lua")
STOCK = lua("stock.lua")


class Publisher:
    """Assigns `seq` and fans a message out to every process through Redis."""

    def __init__(self, redis: Redis, history_size: int = 1000) -> None:
        self.redis = redis
        self.history_size = history_size
        self._publish: AsyncScript = PUBLISH.register(redis)
        self._publish_live: AsyncScript = PUBLISH_LIVE.register(redis)

    async def publish(self, sid: str, type_: str, data: dict[str, Any]) -> int:
        """Broadcast `{"type", "seq", "ts", "data"}` to the stream; returns its seq."""
        seq = await self._publish(
            keys=[keys.seq(sid), keys.history(sid)], args=self._args(sid, type_, data)
        )
        return int(seq)

    async def publish_if_live(
        self, sid: str, type_: str, data: dict[str, Any], record_key: str
    ) -> int | None:
        """`publish`, in the same step as checking that the hash at `record_key` (the
        stream's record, kept by the app) says `status: live`; None, and nothing sent,
        when it does not."""
        seq = await self._publish_live(
            keys=[keys.seq(sid), keys.history(sid), record_key],
            args=self._args(sid, type_, data),
        )
        return int(seq) or None

    def _args(self, sid: str, type_: str, data: dict[str, Any]) -> list[Any]:
        """ARGV of publish.lua and publish_live.lua."""
        return [keys.channel(sid), type_, now_ms(), orjson.dumps(data), self.history_size]

    async def last_seq(self, sid: str) -> int:
        raw = await self.redis.get(keys.seq(sid))
        return int(raw) if raw else 0


class StockFeed:
    """Coalesced `stock` messages: call `changed(sid, sku)` after every stock change.

    The first change in an interval is published at once; later ones in the same
    interval leave a dirty flag, and this process retries when the interval ends, so the
    newest value always goes out, at most once per interval per sku, whatever process
    made the change.

    What this process learned from its last call is kept until that retry: while a call
    for the sku is on its way, or the interval it found running has not ended, another
    change here needs no round trip to Redis (the script would only set the dirty flag):
    it is noted, and the retry at the interval's end publishes it. A flash sale's burst
    of buys then costs one script call per sku and interval, not one per buy.
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
        self._script: AsyncScript = STOCK.register(redis)
        self._retries: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._busy: set[tuple[str, str]] = set()  # a call on its way
        self._dirty: set[tuple[str, str]] = set()  # changed here since that call or interval
        self._flush_due: set[tuple[str, str]] = set()  # our call left the flag in Redis

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
        key = (sid, sku)
        if key in self._busy or key in self._retries:
            self._dirty.add(key)  # published by the retry that follows
            return
        await self._call(key, "change")

    async def _call(self, key: tuple[str, str], mode: str) -> None:
        self._busy.add(key)
        try:
            wait_ms = await self._run(*key, mode)
        except BaseException:
            if key in self._dirty:  # changes noted while it ran: try them later
                self._schedule(key, self.interval_ms)
            raise
        finally:
            self._busy.discard(key)
        if wait_ms > 0:  # an interval runs: the script set the dirty flag
            self._flush_due.add(key)
            self._schedule(key, wait_ms)
        elif wait_ms == 0:  # published: an interval starts now
            self._schedule(key, self.interval_ms)
        elif key in self._dirty:  # nothing was pending in Redis, but a change came here
            self._schedule(key, 0)

    def _schedule(self, key: tuple[str, str], wait_ms: int) -> None:
        if key in self._retries:
            return  # a retry is already due; it will publish the newest value
        loop = asyncio.get_running_loop()
        self._retries[key] = loop.call_later(
            wait_ms / 1000, lambda: asyncio.ensure_future(self._flush(key))
        )

    async def _flush(self, key: tuple[str, str]) -> None:
        self._retries.pop(key, None)
        if key in self._dirty:
            mode = "change"  # a change of ours waits: publish it (or wait again)
        elif key in self._flush_due:
            mode = "flush"  # publish what the flag in Redis says is pending, if still
        else:
            return  # the interval ended with nothing to send
        self._dirty.discard(key)
        self._flush_due.discard(key)
        try:
            await self._call(key, mode)
        except Exception:
            log.exception("stock message for %s/%s failed", *key,
                          extra={"stream": key[0], "sku": key[1]})

    def close(self) -> None:
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        self._dirty.clear()
        self._flush_due.clear()
