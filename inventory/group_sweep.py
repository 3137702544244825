"""The group-buy side of the sweeper: groups whose window ended before enough members
paid are failed by the scripts of inventory/groups.py, found through the
`SWEEP_GROUPS` schedule of streams."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from inventory import keys
from inventory.groups import Groups
from inventory.guard import StreamRecovering
from inventory.registry import stream_pages
from inventory.sweeper import RECOVERY_RETRY_MS, reschedule
from rediskit.codec import now_ms, text

log = logging.getLogger("live.inventory")


Announce = Callable[[str, list[dict[str, Any]]], Awaitable[None]]


class GroupSweep:
    """Fails groups whose window ended, in every process's sweeper loop (the scripts
    decide each failure once; only the process that made it announces it)."""

    def __init__(self, redis: Redis, groups: Groups, on_failed: Announce, batch: int = 100) -> None:
        self.redis = redis
        self.groups = groups
        self.on_failed = on_failed
        self.batch = batch

    async def sweep_once(self) -> int:
        done = 0
        for sid in await self.redis.zrangebyscore(
            keys.SWEEP_GROUPS, "-inf", now_ms(), start=0, num=self.batch
        ):
            done += await self.fail_stream(text(sid))
        return done

    async def fail_stream(self, sid: str, everything: bool = False) -> int:
        try:
            failed = await self.groups.fail_due(sid, everything)
        except StreamRecovering:
            # Not rebuilt from SQL yet (the order store is away): its windows wait.
            await self.redis.zadd(keys.SWEEP_GROUPS, {sid: now_ms() + RECOVERY_RETRY_MS})
            return 0
        await reschedule(
            self.redis, keys.SWEEP_GROUPS, sid, failed.next_due, keys.group_expiry(sid)
        )
        if failed.groups:
            log.info(
                "%d group(s) of %s failed: window ended before enough members paid",
                len(failed.groups),
                sid,
            )
            await self.on_failed(sid, failed.groups)
        return len(failed.groups)

    async def full_scan(self) -> None:
        """Register every stream with open groups (a process may have died between
        opening a group and registering its stream)."""
        async for sids in stream_pages(self.redis):
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid in sids:
                    pipe.zrange(keys.group_expiry(sid), 0, 0, withscores=True)
                firsts = await pipe.execute()
            due = {sid: first[0][1] for sid, first in zip(sids, firsts, strict=True) if first}
            if due:
                await self.redis.zadd(keys.SWEEP_GROUPS, due, lt=True)
