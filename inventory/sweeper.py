"""The background task every service process runs: expires overdue reservations and
ends flash sales whose time is up. Any number of processes may sweep at once; the Lua
scripts decide each change once, and only the process that made a change announces it."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from redis.asyncio import Redis

from inventory import keys
from inventory.guard import StreamRecovering
from inventory.registry import stream_pages
from inventory.reservations import Reservations
from inventory.sales import Sales
from outage import REDIS, FailureLog, redis_down
from rediskit.codec import now_ms, text
from rediskit.periodic import Periodic

log = logging.getLogger("live.inventory")

OnStock = Callable[[str, str], Awaitable[None]]
OnSaleEnded = Callable[[str, dict[str, Any]], Awaitable[None]]
OnGroups = Callable[[str, list[str]], Awaitable[None]]


class SweepPass(Protocol):
    """More due work swept in the same loop (group windows: inventory/groups.py)."""

    async def sweep_once(self) -> int: ...

    async def full_scan(self) -> None: ...

BATCH = 100
# How often the sweeper also walks every stream, to catch one whose reservation was
# made by a process that died before it registered the stream for sweeping.
FULL_SCAN_EVERY_S = 30.0


STOP_TIMEOUT_S = 5.0
# A stream that could not be rebuilt from SQL yet (inventory/guard.py) is tried again
# this much later, not every turn.
RECOVERY_RETRY_MS = 2_000


async def reschedule(
    redis: Redis, schedule: str, sid: str, next_due: int | None, due_times: str
) -> None:
    """After a script swept the stream: put it on `schedule` (a global sorted set of
    streams) at `next_due`, or take it off when the script found nothing more due. Then
    `due_times` (the stream's own sorted set the script read) is looked at again: an
    entry added since the script ran may have registered the stream just before the
    ZREM, and the stream must never be forgotten."""
    if next_due is not None:
        await redis.zadd(schedule, {sid: next_due})
        return
    await redis.zrem(schedule, sid)
    first = await redis.zrange(due_times, 0, 0, withscores=True)
    if first:
        await redis.zadd(schedule, {sid: first[0][1]}, lt=True)


class Sweeper:
    def __init__(
        self,
        redis: Redis,
        reservations: Reservations,
        sales: Sales,
        on_stock: OnStock,
        on_sale_ended: OnSaleEnded,
        interval_s: float = 0.25,
        on_groups: OnGroups | None = None,
    ) -> None:
        self.redis = redis
        self.reservations = reservations
        self.sales = sales
        self.on_stock = on_stock
        self.on_sale_ended = on_sale_ended
        self.on_groups = on_groups  # groups a member dropped out of, to announce
        self.passes: list[SweepPass] = []
        self._last_full_scan = time.monotonic()
        self._failures = FailureLog(log, "inventory sweep")
        # Jitter keeps several processes from sweeping in lockstep.
        self._loop = Periodic(
            "inventory-sweeper", self._turn, interval_s, self._failed, 0.2, STOP_TIMEOUT_S
        )

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _turn(self) -> None:
        await self.sweep_once()
        if time.monotonic() - self._last_full_scan > FULL_SCAN_EVERY_S:
            await self.full_scan()
        self._failures.succeeded()

    async def _failed(self, exc: Exception) -> None:
        if redis_down(exc):
            # Said once per outage (outage.REDIS); wait for Redis, not 0.25 s.
            REDIS.failed("the inventory sweeper", exc)
            await REDIS.wait_back(5.0)
        else:
            self._failures.failed(exc)

    async def sweep_once(self) -> int:
        """One pass over everything due now; returns how many changes this process made."""
        now = now_ms()
        done = 0
        cutoff = now - self.reservations.settled_retention_ms
        # One round trip for the three schedules: this runs four times a second in every
        # process, mostly to find nothing due.
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrangebyscore(keys.SWEEP_SALES, "-inf", now, start=0, num=BATCH)
        pipe.zrangebyscore(keys.SWEEP_RESERVATIONS, "-inf", now, start=0, num=BATCH)
        pipe.zrangebyscore(keys.SWEEP_SETTLED, "-inf", cutoff, start=0, num=BATCH)
        sales, expiring, settled = await pipe.execute()
        for member in sales:
            done += await self._end_sale(text(member))
        for sid in expiring:
            done += await self.expire_stream(text(sid))
        for sid in settled:
            await self.purge_stream(text(sid))
        for extra in self.passes:
            done += await extra.sweep_once()
        return done

    async def purge_stream(self, sid: str) -> None:
        """Drop the stream's settled reservations that are past their retention."""
        first = await self.reservations.purge_settled(sid, BATCH)
        await reschedule(self.redis, keys.SWEEP_SETTLED, sid, first, keys.settled(sid))

    async def _end_sale(self, member: str) -> int:
        sid, sku, sale_id = member.split(" ")
        try:
            ended = await self.sales.end(sid, sku, sale_id, reason="time")
        except StreamRecovering:
            await self.redis.zadd(keys.SWEEP_SALES, {member: now_ms() + RECOVERY_RETRY_MS})
            return 0
        await self.redis.zrem(keys.SWEEP_SALES, member)
        if ended is None:
            return 0  # another process (or a buy) ended it, or it sold out
        log.info("sale %s of %s/%s ended: time up, %d sold", sale_id, sid, sku, ended["sold"],
                 extra={"stream": sid, "sale": sale_id, "sku": sku})
        await self.on_sale_ended(sid, ended)
        await self.on_stock(sid, sku)
        return 1

    async def expire_stream(self, sid: str) -> int:
        try:
            skus, next_due, groups = await self.reservations.expire_due_groups(sid, BATCH)
        except StreamRecovering:
            # Not rebuilt from SQL yet (the order store is away): its holds wait.
            await self.redis.zadd(keys.SWEEP_RESERVATIONS, {sid: now_ms() + RECOVERY_RETRY_MS})
            return 0
        await reschedule(self.redis, keys.SWEEP_RESERVATIONS, sid, next_due, keys.expiry(sid))
        if skus:
            log.info("expired reservations in %s returned stock of %s", sid, ", ".join(skus),
                     extra={"stream": sid})
            await self.reservations.register_settled(sid, now_ms())
        for sku in skus:
            await self.on_stock(sid, sku)
        if groups and self.on_groups is not None:
            await self.on_groups(sid, groups)
        return len(skus)

    async def full_scan(self) -> None:
        """Register every stream with open (or settled) reservations for sweeping (and
        purging). One round trip per
        page of the registry; retired streams have left it, and one retired mid-scan
        just has no open reservation (its expiry set is gone), so it is skipped."""
        self._last_full_scan = time.monotonic()
        for extra in self.passes:
            await extra.full_scan()
        async for sids in stream_pages(self.redis):
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid in sids:
                    pipe.zrange(keys.expiry(sid), 0, 0, withscores=True)
                    pipe.zrange(keys.settled(sid), 0, 0, withscores=True)
                firsts = await pipe.execute()
            due = {sid: f[0][1] for sid, f in zip(sids, firsts[::2], strict=True) if f}
            if due:
                await self.redis.zadd(keys.SWEEP_RESERVATIONS, due, lt=True)
            old = {sid: f[0][1] for sid, f in zip(sids, firsts[1::2], strict=True) if f}
            if old:
                await self.redis.zadd(keys.SWEEP_SETTLED, old, lt=True)
