"""Retention of a stream's Redis state, run by the order drainer.

Two rules keep Redis from growing without bound:

- Event trimming: an entry of `inv:{sid}:events` that every consumer group has
  acknowledged is removed once it is older than the events retention window (kept that
  long for replay and diagnosis). Nothing a group still needs is ever removed: the cut
  (XTRIM MINID) never passes the oldest pending entry or the last-delivered id of ANY
  group, whichever drainer or order store it belongs to.
- Retiring ended streams: once a stream has ended, has no open reservation, and every
  group has drained and acknowledged all of its events, its Redis keys are deleted
  `stream_retention_s` after its end and it leaves the registry `live:streams`, so the
  drainer, the sweeper and `/healthz` stop walking it. SQL keeps the stream, its
  products and its orders for the record (see live/state.py for what the API serves).

Both checks run as Lua scripts on the stream's own keys (one hash tag), so the decision
and the deletion are one atomic step: an event appended or delivered meanwhile is seen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from inventory import keys as inv_keys
from inventory.registry import stream_pages
from inventory.streams import ENDED_STREAMS, meta_key
from orders.cluster import run_script_many
from realtime import keys as rt_keys
from rediskit.codec import now_ms, text
from rediskit.lua import Script

log = logging.getLogger("orders.retention")

# One drainer at a time runs the (global) retirement pass; the lock expires by itself.
RETIRE_LOCK = "live:retention:lock"
# And one at a time, rarely, walks the registry for ended streams missing from
# ENDED_STREAMS (ended before retention existed, or a crash between the end and its
# registration).
REGISTER_LOCK = "live:retention:register"
REGISTER_EVERY_MS = 600_000
PAGE = 100
PAGES_PER_PASS = 10  # at most 1000 streams looked at per pass; the rest wait a pass
# Entries removed per XTRIM at most, so that a first trim of a huge backlog never
# blocks Redis for long; the next pass goes on where this one stopped.
TRIM_LIMIT = 10_000
# A stream that cannot be retired yet (undrained, open reservations) is looked at again
# after this long (at most; short retentions retry sooner).
RETRY_MAX_MS = 60_000

LUA_DIR = Path(__file__).parent / "lua"
# Both decide and delete in one step on the stream's own keys (lua/*.lua say how).
TRIM = Script(LUA_DIR, "trim.lua", head=("ids.lua",))
RETIRE = Script(LUA_DIR, "retire.lua", head=("ids.lua",))


def stream_keys(sid: str) -> list[str]:
    """Every key of stream `sid` that has no expiry of its own, meta, events, expiry and
    dead letters first (the order lua/retire.lua takes them in). Per-viewer and per-sku
    keys (rate limits, connection leases, stock and likes gates) expire by themselves.

    A new per-stream key without a TTL must be added here, or it outlives its stream
    (tests/test_orders_retention.py checks that nothing without a TTL is left)."""
    return [
        meta_key(sid),
        inv_keys.events(sid),
        inv_keys.expiry(sid),
        inv_keys.dead_letters(sid),
        inv_keys.checked(sid),
        inv_keys.products(sid),
        inv_keys.stock(sid),
        inv_keys.sales(sid),
        inv_keys.held(sid),
        inv_keys.reservations(sid),
        inv_keys.idempotency(sid),
        inv_keys.counts(sid),
        inv_keys.group_buys(sid),
        inv_keys.groups(sid),
        inv_keys.group_expiry(sid),
        inv_keys.referrals(sid),
        inv_keys.referral_codes(sid),
        inv_keys.commission(sid),
        inv_keys.settled(sid),
        inv_keys.purged(sid),
        rt_keys.seq(sid),
        rt_keys.history(sid),
        rt_keys.stats(sid),
        rt_keys.mutes(sid),
        rt_keys.banned_words(sid),
        rt_keys.likes_pending(sid),
        rt_keys.likes_gate(sid),
        rt_keys.viewer_counts(sid),
        rt_keys.viewers_gate(sid),
        rt_keys.comment_ids(sid),
        rt_keys.deleted_comments(sid),
    ]


@dataclass
class RetentionStats:
    trim_passes: int = 0
    trimmed: int = 0  # events removed
    retire_passes: int = 0
    retired: int = 0  # streams whose Redis state was deleted
    held_back: int = 0  # ended streams past retention not retired yet, last pass


class Retention:
    def __init__(
        self,
        redis: Redis,
        events_retention_ms: int,
        stream_retention_ms: int,
        interval_ms: int,
        only: frozenset[str] = frozenset(),
    ) -> None:
        self.redis = redis
        self.events_retention_ms = events_retention_ms
        self.stream_retention_ms = stream_retention_ms
        self.interval_ms = interval_ms
        self.only = only
        self.retry_ms = max(interval_ms, min(RETRY_MAX_MS, stream_retention_ms))
        self.stats = RetentionStats()
        self._trim = TRIM.register(redis)
        self._retire = RETIRE.register(redis)
        self._next_trim: dict[str, float] = {}
        self._not_before: dict[str, float] = {}  # sharded mode's retry times, per sid

    # --- event trimming ------------------------------------------------------------

    async def trim(self, keys: Iterable[str]) -> int:
        """Trim those of these events streams whose last trim is more than an interval
        ago. Called after acknowledging entries of them: a stream only grows while
        events arrive, and every event is acknowledged, so an idle stream needs no pass
        (whatever it still holds goes when the stream is retired)."""
        now = time.monotonic()
        due = [k for k in keys if self._next_trim.get(k, 0.0) <= now]
        if not due:
            return 0
        for key in due:
            self._next_trim[key] = now + self.interval_ms / 1000
        replies = await run_script_many(
            self.redis, self._trim, [([k], [self.events_retention_ms, TRIM_LIMIT]) for k in due]
        )
        removed = sum(int(r[0]) for r in replies)
        self.stats.trim_passes += 1
        self.stats.trimmed += removed
        if removed:
            log.debug("trimmed %d acknowledged events of %d stream(s)", removed, len(due))
        return removed

    def forget(self, keep: set[str]) -> None:
        """Drop the trim clocks of events streams no longer drained (retired)."""
        for key in self._next_trim.keys() - keep:
            del self._next_trim[key]

    # --- retiring ended streams ----------------------------------------------------

    async def retire_due(self) -> list[str]:
        """One retirement pass; returns the stream ids retired."""
        self.stats.retire_passes += 1
        now = now_ms()
        cutoff = now - self.stream_retention_ms
        if self.only:
            # A sharded drainer looks after its own streams, straight from their meta.
            sids = sorted(self.only)
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid in sids:
                    pipe.hget(meta_key(sid), "ended_at")
                ended = await pipe.execute()
            mono = time.monotonic()
            due = [
                sid
                for sid, at in zip(sids, ended, strict=True)
                if at is not None and int(at) <= cutoff and self._not_before.get(sid, 0.0) <= mono
            ]
            retired, waiting = await self._retire_many(due, cutoff)
            for sid in waiting:
                self._not_before[sid] = mono + self.retry_ms / 1000
            self.stats.held_back = len(waiting)
            return retired
        await self._register_ended()
        # A pass every interval is enough from one drainer of the deployment.
        if not await self.redis.set(RETIRE_LOCK, "1", nx=True, px=self.interval_ms):
            return []
        retired_all: list[str] = []
        held_back = 0
        for _ in range(PAGES_PER_PASS):
            page = [
                text(m)
                for m in await self.redis.zrangebyscore(
                    ENDED_STREAMS, "-inf", cutoff, start=0, num=PAGE
                )
            ]
            if not page:
                break
            retired, waiting = await self._retire_many(page, cutoff)
            retired_all += retired
            held_back += len(waiting)
            if waiting:
                # Looked at again after retry_ms: the score only ever moves later, and
                # the page query skips them meanwhile.
                later = now - self.stream_retention_ms + self.retry_ms
                await self.redis.zadd(ENDED_STREAMS, dict.fromkeys(waiting, later), xx=True)
            if len(page) < PAGE:
                break
        self.stats.held_back = held_back
        return retired_all

    async def _retire_many(self, sids: list[str], cutoff: int) -> tuple[list[str], list[str]]:
        """Run lua/retire.lua for each stream; clean the registries of those whose state is
        gone. Returns (retired, not retirable yet)."""
        if not sids:
            return [], []
        replies = await run_script_many(
            self.redis, self._retire, [(stream_keys(sid), [cutoff]) for sid in sids]
        )
        retired: list[str] = []
        gone: list[str] = []
        waiting: list[str] = []
        requeue: dict[str, int] = {}
        for sid, (outcome, ended_at) in zip(sids, replies, strict=True):
            outcome = text(outcome)
            if outcome == "retired":
                retired.append(sid)
            elif outcome == "gone":
                gone.append(sid)  # retired earlier by a drainer that died before cleanup
            elif outcome == "recent":
                requeue[sid] = int(text(ended_at))  # a wrong score: the meta knows better
            elif outcome in ("open_reservations", "undrained", "dead_letters"):
                waiting.append(sid)
                log.debug("ended stream %s kept: %s", sid, outcome)
        if requeue and not self.only:
            await self.redis.zadd(ENDED_STREAMS, requeue, xx=True)
        done = retired + gone
        live = [sid for sid, (o, _) in zip(sids, replies, strict=True) if text(o) == "live"]
        if done or live:
            async with self.redis.pipeline(transaction=False) as pipe:
                if done:
                    # The keys went first: a drainer that still lists the stream finds
                    # its events key gone and drops it, and never creates it again.
                    pipe.srem(inv_keys.STREAMS, *done)
                    pipe.zrem(inv_keys.SWEEP_RESERVATIONS, *done)
                # Not ended (yet): ending it registers it again.
                pipe.zrem(ENDED_STREAMS, *(done + live))
                await pipe.execute()
        for sid in done:
            self._not_before.pop(sid, None)
        if retired:
            self.stats.retired += len(retired)
            log.info(
                "retired %d ended stream(s): Redis state deleted, SQL keeps the record: %s",
                len(retired),
                ", ".join(retired),
            )
        return retired, waiting

    async def _register_ended(self) -> None:
        # Rarely, and from one drainer of the deployment at a time.
        if await self.redis.set(REGISTER_LOCK, "1", nx=True, px=REGISTER_EVERY_MS):
            await self.register_ended()

    async def register_ended(self) -> None:
        """Walk the registry and put every ended stream into ENDED_STREAMS (ZADD NX
        keeps the scores already there)."""
        added = 0
        async for sids in stream_pages(self.redis):
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid in sids:
                    pipe.hget(meta_key(sid), "ended_at")
                ended = await pipe.execute()
            found = {sid: int(at) for sid, at in zip(sids, ended, strict=True) if at}
            if found:
                added += int(await self.redis.zadd(ENDED_STREAMS, found, nx=True))
        if added:
            log.info("registered %d ended stream(s) for retirement", added)
