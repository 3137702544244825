"""The background task every service process runs: expires overdue reservations and
ends flash sales whose time is up. Any number of processes may sweep at once; the Lua
scripts decide each change once, and only the process that made a change announces it."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from inventory import keys
from inventory.registry import stream_pages
from inventory.reservations import Reservations
from inventory.sales import Sales
from inventory.scripts import now_ms, text

log = logging.getLogger("live.inventory")

OnStock = Callable[[str, str], Awaitable[None]]
OnSaleEnded = Callable[[str, dict[str, Any]], Awaitable[None]]

BATCH = 100
# How often the sweeper also walks every stream, to catch one whose reservation was
# made by a process that died before it registered the stream for sweeping.
FULL_SCAN_EVERY_S = 30.0


STOP_TIMEOUT_S = 5.0


class Sweeper:
    def __init__(
        self,
        redis: Redis,
        reservations: Reservations,
        sales: Sales,
        on_stock: OnStock,
        on_sale_ended: OnSaleEnded,
        interval_s: float = 0.25,
    ) -> None:
        self.redis = redis
        self.reservations = reservations
        self.sales = sales
        self.on_stock = on_stock
        self.on_sale_ended = on_sale_ended
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_full_scan = time.monotonic()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="inventory-sweeper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # The flag as well as the cancel: a cancellation that lands inside a Redis call
        # can be swallowed there (seen under load: the sweeper went on after cancel() and
        # held up the worker's shutdown). The loop then ends at its next turn.
        self._stopping = True
        task.cancel()
        try:
            await asyncio.wait_for(task, STOP_TIMEOUT_S)
        except (asyncio.CancelledError, TimeoutError):
            pass

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.sweep_once()
                if time.monotonic() - self._last_full_scan > FULL_SCAN_EVERY_S:
                    await self.full_scan()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inventory sweep failed; retrying")
            # Jitter keeps several processes from sweeping in lockstep.
            await asyncio.sleep(self.interval_s * random.uniform(0.8, 1.2))

    async def sweep_once(self) -> int:
        """One pass over everything due now; returns how many changes this process made."""
        now = now_ms()
        done = 0
        for member in await self.redis.zrangebyscore(
            keys.SWEEP_SALES, "-inf", now, start=0, num=BATCH
        ):
            done += await self._end_sale(text(member))
        for sid in await self.redis.zrangebyscore(
            keys.SWEEP_RESERVATIONS, "-inf", now, start=0, num=BATCH
        ):
            done += await self.expire_stream(text(sid))
        return done

    async def _end_sale(self, member: str) -> int:
        sid, sku, sale_id = member.split(" ")
        ended = await self.sales.end(sid, sku, sale_id, reason="time")
        await self.redis.zrem(keys.SWEEP_SALES, member)
        if ended is None:
            return 0  # another process (or a buy) ended it, or it sold out
        log.info("sale %s of %s/%s ended: time up, %d sold", sale_id, sid, sku, ended["sold"])
        await self.on_sale_ended(sid, ended)
        await self.on_stock(sid, sku)
        return 1

    async def expire_stream(self, sid: str) -> int:
        skus, next_due = await self.reservations.expire_due(sid, BATCH)
        if next_due is not None:
            await self.redis.zadd(keys.SWEEP_RESERVATIONS, {sid: next_due})
        else:
            await self.redis.zrem(keys.SWEEP_RESERVATIONS, sid)
            # A reservation made since the script ran may have registered the stream
            # just before that ZREM: look again so it is never forgotten.
            first = await self.redis.zrange(keys.expiry(sid), 0, 0, withscores=True)
            if first:
                await self.redis.zadd(keys.SWEEP_RESERVATIONS, {sid: first[0][1]}, lt=True)
        if skus:
            log.info("expired reservations in %s returned stock of %s", sid, ", ".join(skus))
        for sku in skus:
            await self.on_stock(sid, sku)
        return len(skus)

    async def full_scan(self) -> None:
        """Register every stream with open reservations for sweeping. One round trip per
        page of the registry; retired streams have left it, and one retired mid-scan
        just has no open reservation (its expiry set is gone), so it is skipped."""
        self._last_full_scan = time.monotonic()
        async for sids in stream_pages(self.redis):
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid in sids:
                    pipe.zrange(keys.expiry(sid), 0, 0, withscores=True)
                firsts = await pipe.execute()
            due = {sid: first[0][1] for sid, first in zip(sids, firsts, strict=True) if first}
            if due:
                await self.redis.zadd(keys.SWEEP_RESERVATIONS, due, lt=True)
