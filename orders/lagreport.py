"""The drain backlog as `/healthz` reports it, without walking every stream per request.

Measuring the backlog means asking every stream's event log for its consumer group
(XINFO GROUPS), which costs as much as there are streams. So one service process at a
time measures it in the background, a page of streams per round trip, and stores the
totals in one key; `/healthz` reads that key: one GET, whatever the number of streams.
The walk runs every `LIVE_DRAIN_LAG_REPORT_MS`, and never takes more than a twentieth
of the time (with very many streams the report is refreshed less often rather than
loading Redis more). The report carries its age, so a stale one is visible as such.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from redis.asyncio import Redis

from inventory import keys as inv_keys
from inventory.registry import stream_pages
from orders.lag import waiting
from rediskit.codec import now_ms
from rediskit.periodic import Periodic

log = logging.getLogger("orders.lag")

DUTY = 20  # the walk takes at most 1/DUTY of the time
PAGE = 500


def report_key(group: str) -> str:
    return f"live:drain:lag:{group}"


def _lock_key(group: str) -> str:
    return f"live:drain:lag:{group}:lock"


async def measure(redis: Redis, group: str) -> dict[str, int]:
    """Events not yet in SQL over every stream: `lag` (not yet delivered to a drainer)
    and `pending` (delivered, not yet acknowledged), a page of streams at a time."""
    total_lag = total_pending = streams = 0
    seen: set[str] = set()  # SSCAN may return a stream twice
    async for page in stream_pages(redis, PAGE):
        sids = [sid for sid in page if sid not in seen]
        seen.update(sids)
        async with redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.xinfo_groups(inv_keys.events(sid))
                pipe.xlen(inv_keys.events(sid))
            replies = await pipe.execute(raise_on_error=False)
        for groups, length in zip(replies[::2], replies[1::2], strict=True):
            if isinstance(groups, Exception):
                continue  # no such key (retired meanwhile): nothing waiting
            streams += 1
            n = int(length) if not isinstance(length, Exception) else 0
            stream_lag, pending = waiting(groups, n, group)
            total_lag += stream_lag
            total_pending += pending
    return {"lag": total_lag, "pending": total_pending, "streams": streams}


async def read_report(redis: Redis, group: str) -> dict[str, Any] | None:
    """The latest report (`lag`, `pending`, `streams`, `age_ms`), or None."""
    raw = await redis.get(report_key(group))
    if not raw:
        return None
    report = orjson.loads(raw)
    report["age_ms"] = max(0, now_ms() - int(report.pop("at")))
    return report


class LagReporter:
    def __init__(self, redis: Redis, group: str, interval_ms: int) -> None:
        self.redis = redis
        self.group = group
        self.interval_s = interval_ms / 1000
        # Set once a report exists (ours, or another process's within the interval).
        self.ready = asyncio.Event()
        self._failing = False
        self._loop = Periodic("drain-lag-report", self._turn, self.interval_s, self._failed)

    async def report_once(self) -> bool:
        """Measure and store, unless another process did within the interval."""
        lock_ms = max(1, int(self.interval_s * 1000))
        lock = _lock_key(self.group)
        if not await self.redis.set(lock, b"1", nx=True, px=lock_ms):
            return False
        started = time.monotonic()
        try:
            totals = await measure(self.redis, self.group)
        except BaseException:
            # Let the next attempt (any process) measure instead of waiting a whole interval.
            await asyncio.shield(self.redis.delete(lock))
            raise
        elapsed = time.monotonic() - started
        report = {**totals, "at": now_ms()}
        # Kept a while past the next report, so a dead reporter shows as an old report.
        keep_ms = int(max(self.interval_s, elapsed * DUTY) * 10_000)
        await self.redis.set(report_key(self.group), orjson.dumps(report), px=keep_ms)
        if elapsed * DUTY > self.interval_s:
            # Hold the lock longer: nobody walks again before DUTY x the walk's time.
            await self.redis.pexpire(_lock_key(self.group), int(elapsed * DUTY * 1000))
        return True

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _turn(self) -> None:
        await self.report_once()
        self.ready.set()
        if self._failing:
            log.info("drain lag report works again")
        self._failing = False

    async def _failed(self, exc: Exception) -> None:
        if not self._failing:  # once, not every turn while Redis is away
            log.warning("drain lag report failed (%r); retrying", exc)
        self._failing = True
