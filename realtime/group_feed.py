"""Coalesced `group.progress` messages, the way `stock` messages are (publish.StockFeed):
call `changed(sid, group_id)` after every change of a group's counts. The first change in
an interval goes out at once; later ones leave a dirty flag and this process publishes
the newest counts when the interval ends, so the last message is always current."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from realtime import keys
from realtime.publish import lua
from rediskit.codec import now_ms

log = logging.getLogger("live.realtime")

PROGRESS_INTERVAL_MS = 100
GROUP_PROGRESS = lua("group_progress.lua")


def gate(sid: str, gid: str) -> str:
    """Exists while a `group.progress` interval for this group runs (expires itself)."""
    return f"rt:{{{sid}}}:ggate:{gid}"


def dirty(sid: str, gid: str) -> str:
    """Set when the group changed inside an interval (expires itself)."""
    return f"rt:{{{sid}}}:gdirty:{gid}"


class GroupFeed:
    def __init__(
        self,
        redis: Redis,
        groups_key: Callable[[str], str],
        history_size: int = 1000,
        interval_ms: int = PROGRESS_INTERVAL_MS,
    ) -> None:
        self.redis = redis
        self.groups_key = groups_key  # injected: realtime does not know the inventory
        self.history_size = history_size
        self.interval_ms = interval_ms
        self._script: AsyncScript = GROUP_PROGRESS.register(redis)
        self._retries: dict[tuple[str, str], asyncio.TimerHandle] = {}

    async def _run(self, sid: str, gid: str, mode: str) -> int:
        return int(
            await self._script(
                keys=[
                    gate(sid, gid),
                    dirty(sid, gid),
                    self.groups_key(sid),
                    keys.seq(sid),
                    keys.history(sid),
                ],
                args=[gid, keys.channel(sid), now_ms(), self.history_size, self.interval_ms, mode],
            )
        )

    async def changed(self, sid: str, gid: str) -> None:
        wait_ms = await self._run(sid, gid, "change")
        if wait_ms > 0:
            self._schedule(sid, gid, wait_ms)

    def _schedule(self, sid: str, gid: str, wait_ms: int) -> None:
        if (sid, gid) in self._retries:
            return
        loop = asyncio.get_running_loop()
        self._retries[(sid, gid)] = loop.call_later(
            wait_ms / 1000, lambda: asyncio.ensure_future(self._flush(sid, gid))
        )

    async def _flush(self, sid: str, gid: str) -> None:
        self._retries.pop((sid, gid), None)
        try:
            wait_ms = await self._run(sid, gid, "flush")
        except Exception:
            log.exception("group.progress for %s/%s failed", sid, gid)
            return
        if wait_ms > 0:
            self._schedule(sid, gid, wait_ms)

    def close(self) -> None:
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
