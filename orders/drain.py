"""The order drainer: inventory events from Redis Streams into SQL, exactly once.

Reads every stream listed in `live:streams` through the consumer group `orders`
(XREADGROUP), applies a batch in one SQL transaction of idempotent upserts, and
acknowledges (XACK) only after COMMIT. A drainer that dies leaves its entries pending;
any live drainer claims them (XAUTOCLAIM) once they have been idle for
`claim_idle_ms`, and re-applying them is a no-op. So: at-least-once delivery from Redis
+ idempotent effects in SQL = every event takes effect exactly once.

Backpressure: while SQL fails, the drainer keeps retrying the batch in hand (with
backoff) and reads nothing new, so events wait in Redis, where `lag()` reports them.

Retention (orders/retention.py): after acknowledging, the drainer trims what every group
has acknowledged and is older than the events window, and every interval it deletes the
Redis state of ended, fully drained streams past their retention.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from orders.events import Batch
from orders.retention import Retention
from orders.store import apply_batch

log = logging.getLogger("orders.drain")

GROUP = "orders"
# Entries that can never be applied (malformed) are moved here rather than lost.
DEAD_LETTER = "orders:deadletter"
DEAD_LETTER_MAXLEN = 100_000
# XREADGROUP takes every stream key as an argument; keep each call's size bounded.
KEYS_PER_READ = 256

Entry = tuple[str, str, dict[str, Any]]  # stream key, entry id, fields


def _env_int(env: dict[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name) or ""
    value = int(raw) if raw.strip() else default
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class DrainSettings:
    batch_size: int = 500  # entries per SQL transaction at most
    block_ms: int = 500  # how long one XREADGROUP waits for new entries
    claim_idle_ms: int = 30_000  # a pending entry idle this long belongs to a dead drainer
    refresh_ms: int = 1_000  # how often the list of streams is re-read
    retry_max_ms: int = 5_000  # longest back-off between retries of a failing batch
    max_lag: int = 1_000_000  # above this many waiting events /healthz says "behind"
    group: str = GROUP  # another group name gives an independent copy of the order store
    only: frozenset[str] = frozenset()  # drain only these stream ids (sharding); empty: all
    events_retention_s: int = 24 * 3600  # acknowledged events are kept this long
    stream_retention_s: int = 7 * 24 * 3600  # an ended, drained stream's Redis state too
    retention_interval_ms: int = 5_000  # trim a stream / look for streams to retire

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DrainSettings:
        env = dict(os.environ if env is None else env)
        return cls(
            batch_size=_env_int(env, "LIVE_DRAIN_BATCH", 500, 1),
            block_ms=_env_int(env, "LIVE_DRAIN_BLOCK_MS", 500, 1),
            claim_idle_ms=_env_int(env, "LIVE_DRAIN_CLAIM_IDLE_MS", 30_000, 100),
            refresh_ms=_env_int(env, "LIVE_DRAIN_REFRESH_MS", 1_000, 10),
            retry_max_ms=_env_int(env, "LIVE_DRAIN_RETRY_MAX_MS", 5_000, 10),
            max_lag=_env_int(env, "LIVE_DRAIN_MAX_LAG", 1_000_000, 1),
            group=(env.get("LIVE_DRAIN_GROUP") or GROUP).strip(),
            only=frozenset(
                s.strip() for s in (env.get("LIVE_DRAIN_ONLY") or "").split(",") if s.strip()
            ),
            events_retention_s=_env_int(env, "LIVE_EVENTS_RETENTION_S", 24 * 3600, 0),
            stream_retention_s=_env_int(env, "LIVE_STREAM_RETENTION_S", 7 * 24 * 3600, 0),
            retention_interval_ms=_env_int(env, "LIVE_RETENTION_INTERVAL_MS", 5_000, 10),
        )


def consumer_name() -> str:
    """Unique per process and per start, so a restarted drainer never inherits the
    pending entries of its previous life except through XAUTOCLAIM."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class DrainStats:
    batches: int = 0
    entries: int = 0
    claimed: int = 0
    dead_lettered: int = 0
    failures: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.time)


class Drainer:
    def __init__(
        self,
        redis: Redis,
        engine: AsyncEngine,
        settings: DrainSettings | None = None,
        consumer: str | None = None,
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.settings = settings or DrainSettings()
        self.consumer = consumer or consumer_name()
        self.group = self.settings.group
        self.stats = DrainStats()
        self._keys: list[str] = []
        self._grouped: set[str] = set()
        self._next_refresh = 0.0
        self._next_claim = 0.0
        self._claim_cursor: dict[str, str] = {}
        self._hot: set[str] = set()  # event keys that filled their share of the last read
        self._rotation = 0
        self.retention = Retention(
            redis,
            events_retention_ms=self.settings.events_retention_s * 1000,
            stream_retention_ms=self.settings.stream_retention_s * 1000,
            interval_ms=self.settings.retention_interval_ms,
            only=self.settings.only,
        )
        self._next_retire = 0.0

    # --- the loop ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until `stop` is set. The next batch is fetched from Redis while the
        current one commits (only the SQL transaction is on the critical path); it is
        still acknowledged only after its own COMMIT."""
        log.info("drainer %s started", self.consumer)
        prefetch: asyncio.Task[tuple[list[Entry], Batch]] | None = None
        acking: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    if prefetch is not None:
                        (entries, batch), prefetch = await prefetch, None
                    elif stop.is_set():
                        break
                    else:
                        entries, batch = await self._take_prepared()
                    if not entries:
                        continue
                    if not stop.is_set():
                        prefetch = asyncio.create_task(self._take_prepared())
                    # On stop the prefetched batch is applied too rather than left for
                    # XAUTOCLAIM; a failing database leaves both pending instead.
                    committed = await self._apply_until_committed(entries, stop, batch)
                    if acking is not None:
                        # At most one XACK in flight; a lost one only means a replay.
                        acking, previous = None, acking
                        await previous
                    if committed:
                        acking = asyncio.create_task(self._ack(entries))
                    elif prefetch is not None:
                        (entries, _), prefetch = await prefetch, None
                        log.info("drainer %s: %d entries left pending", self.consumer, len(entries))
                except RedisError as exc:
                    # Redis gone: nothing unacknowledged is lost (it stays pending).
                    self.stats.failures += 1
                    self.stats.last_error = repr(exc)
                    log.warning("drainer %s: redis error %r; retrying", self.consumer, exc)
                    for task in (prefetch, acking):
                        if task is not None:
                            task.cancel()
                    prefetch = acking = None
                    await _sleep_or_stop(stop, 1.0)
            if acking is not None:
                acking, last = None, acking
                try:
                    await last
                except RedisError as exc:
                    log.warning(
                        "drainer %s: last XACK failed (%r); replayed later", self.consumer, exc
                    )
        finally:
            for task in (prefetch, acking):
                if task is not None:
                    task.cancel()  # cancelled from outside: those entries stay pending
            log.info("drainer %s stopped after %d entries", self.consumer, self.stats.entries)

    async def take(self) -> list[Entry]:
        """The next batch: entries claimed from dead drainers when that pass is due,
        else new entries (waiting up to `block_ms` for them)."""
        now = time.monotonic()
        if now >= self._next_retire:
            self._next_retire = now + self.settings.retention_interval_ms / 1000
            if await self._retire_due():
                self._next_refresh = 0.0  # stop reading the retired streams at once
        if now >= self._next_refresh:
            await self.refresh_streams()
            self._next_refresh = now + self.settings.refresh_ms / 1000
        entries: list[Entry] = []
        if now >= self._next_claim:
            entries = await self.claim()
            self._next_claim = now + self.settings.claim_idle_ms / 2000
        if not entries:
            entries = await self.read()
        return entries

    async def step(self, stop: asyncio.Event | None = None) -> int:
        """Take one batch, apply it, acknowledge it (no prefetch). Returns its size."""
        entries = await self.take()
        if entries:
            if not await self._apply_until_committed(entries, stop):
                return 0
            await self._ack(entries)
        return len(entries)

    # --- Redis side ----------------------------------------------------------------

    async def refresh_streams(self) -> None:
        if self.settings.only:
            # A shard's own streams, without reading the whole registry; one not created
            # yet (or retired) has no events key and is skipped below.
            sids = set(self.settings.only)
        else:
            sids = {_s(sid) for sid in await self.redis.smembers(inv_keys.STREAMS)}
        listed = sorted(inv_keys.events(sid) for sid in sids)
        self._grouped &= set(listed)
        keys: list[str] = []
        for key in listed:
            if key not in self._grouped:
                try:
                    # At id 0: a stream that got events before its group existed loses
                    # none. No MKSTREAM: every stream's events key exists from its
                    # `stream.created` on, so a missing one was retired (deleted) after
                    # the registry was read, and must not come back empty.
                    await self.redis.xgroup_create(key, self.group, id="0")
                except ResponseError as exc:
                    if "requires the key to exist" in str(exc):
                        continue
                    if "BUSYGROUP" not in str(exc):
                        raise
                self._grouped.add(key)
            keys.append(key)
        self._keys = keys
        kept = set(keys)
        for key in self._claim_cursor.keys() - kept:
            del self._claim_cursor[key]
        self.retention.forget(kept)

    async def read(self) -> list[Entry]:
        if not self._keys:
            await asyncio.sleep(self.settings.block_ms / 1000)
            return []
        # Streams that filled their share last time (a flash sale's backlog) are read
        # first, with half the batch; the rest share what is left, at least one entry
        # each. A fair share alone would give a hot stream among hundreds of quiet ones
        # one entry per read.
        hot = [key for key in self._keys if key in self._hot]
        cold = [key for key in self._keys if key not in self._hot]
        if len(cold) > KEYS_PER_READ:
            # Start where the last read started plus one chunk: when the batch fills
            # before the last chunks, they come first next time.
            self._rotation = (self._rotation + KEYS_PER_READ) % len(cold)
            cold = cold[self._rotation :] + cold[: self._rotation]
        step = KEYS_PER_READ
        chunks = [hot[i : i + step] for i in range(0, len(hot), step)]
        chunks += [cold[i : i + step] for i in range(0, len(cold), step)]
        out: list[Entry] = []
        self._hot = set()
        budget = self.settings.batch_size
        for n, chunk in enumerate(chunks):
            share = budget // 2 if chunk[0] in hot and cold else budget
            count = max(1, share // len(chunk))  # COUNT is per stream
            # Block only on the last chunk and only if nothing came before.
            block = self.settings.block_ms if (n == len(chunks) - 1 and not out) else None
            try:
                resp = await self.redis.xreadgroup(
                    self.group, self.consumer, dict.fromkeys(chunk, ">"), count=count,
                    block=block,
                )
            except ResponseError as exc:
                # NOGROUP: a stream key was deleted (retired) or deleted and re-created;
                # UNBLOCKED: it was deleted while this read waited on it.
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                await self._regroup(chunk)
                return out
            for key, messages in resp or ():
                if len(messages) >= count:
                    self._hot.add(_s(key))
            out.extend(_entries(resp))
            budget = self.settings.batch_size - len(out)
            if budget <= 0:
                break
        return out

    async def _regroup(self, chunk: list[str]) -> None:
        """Stop reading the keys of `chunk` that are gone (retired streams) and make the
        group again, at the next refresh, on the others (one may have been re-created)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.exists(key)
            exists = await pipe.execute()
        gone = {key for key, there in zip(chunk, exists, strict=True) if not there}
        self._keys = [key for key in self._keys if key not in gone]
        self._grouped -= set(chunk)
        self._next_refresh = 0.0

    async def claim(self) -> list[Entry]:
        """Take over entries a dead (or stuck) drainer left pending too long."""
        out: list[Entry] = []
        for key in self._keys:
            budget = self.settings.batch_size - len(out)
            if budget <= 0:
                break
            start = self._claim_cursor.get(key, "0-0")
            try:
                resp = await self.redis.xautoclaim(
                    key,
                    self.group,
                    self.consumer,
                    self.settings.claim_idle_ms,
                    start_id=start,
                    count=budget,
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                continue
            cursor, claimed = _s(resp[0]), resp[1]
            self._claim_cursor[key] = cursor
            deleted = resp[2] if len(resp) > 2 else []
            if deleted:
                log.error("pending entries %s of %s were trimmed undrained", deleted, key)
                await self.redis.xack(key, self.group, *deleted)
            for entry_id, fields in claimed:
                if fields is not None:
                    out.append((key, _s(entry_id), _fields(fields)))
        if out:
            self.stats.claimed += len(out)
            log.warning("drainer %s claimed %d idle pending entries", self.consumer, len(out))
        return out

    async def _ack(self, entries: list[Entry]) -> None:
        by_key: dict[str, list[str]] = {}
        for key, entry_id, _ in entries:
            by_key.setdefault(key, []).append(entry_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, ids in by_key.items():
                pipe.xack(key, self.group, *ids)
            await pipe.execute()
        try:
            # After the acks, off the critical path, at most every interval per stream.
            await self.retention.trim(by_key)
        except Exception as exc:
            # Trimming only frees memory: a failed pass is retried after the next acks.
            log.warning("drainer %s: trimming events failed: %r", self.consumer, exc)

    async def _retire_due(self) -> list[str]:
        try:
            return await self.retention.retire_due()
        except Exception as exc:
            # Retirement only frees memory; it must never stop the drain.
            log.warning("drainer %s: retiring ended streams failed: %r", self.consumer, exc)
            return []

    # --- SQL side ------------------------------------------------------------------

    @staticmethod
    def prepare(entries: list[Entry]) -> Batch:
        batch = Batch()
        for key, entry_id, fields in entries:
            batch.add(key, entry_id, fields)
        return batch

    async def _take_prepared(self) -> tuple[list[Entry], Batch]:
        entries = await self.take()
        return entries, self.prepare(entries)

    async def _apply_until_committed(
        self, entries: list[Entry], stop: asyncio.Event | None, batch: Batch | None = None
    ) -> bool:
        if batch is None:
            batch = self.prepare(entries)
        if batch.bad:
            await self._dead_letter(batch, entries)
        delay = 0.05
        while True:
            try:
                await apply_batch(self.engine, batch)
            except Exception as exc:
                # The entries stay pending in Redis: retry the same batch (idempotent).
                self.stats.failures += 1
                self.stats.last_error = repr(exc)
                log.warning(
                    "drainer %s: SQL batch of %d failed (%s); retrying in %.2fs",
                    self.consumer,
                    len(entries),
                    type(exc).__name__,
                    delay,
                )
                if stop is not None and stop.is_set():
                    return False  # left pending; another drainer or our restart claims it
                if stop is None:
                    await asyncio.sleep(delay)
                else:
                    await _sleep_or_stop(stop, delay)
                delay = min(delay * 2, self.settings.retry_max_ms / 1000)
                continue
            self.stats.batches += 1
            self.stats.entries += len(entries)
            return True

    async def _dead_letter(self, batch: Batch, entries: list[Entry]) -> None:
        fields_of = {(k, i): f for k, i, f in entries}
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, entry_id, why in batch.bad:
                log.error("event %s %s cannot be applied (%s): dead-lettered", key, entry_id, why)
                record = {"stream": key, "entry": entry_id, "why": why}
                for name, value in fields_of.get((key, entry_id), {}).items():
                    record[f"f_{_s(name)}"] = value
                pipe.xadd(DEAD_LETTER, record, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
            await pipe.execute()
        self.stats.dead_lettered += len(batch.bad)


async def lag(redis: Redis, group: str = GROUP) -> dict[str, int]:
    """Events not yet in SQL, over every stream: `lag` (never delivered to a drainer)
    and `pending` (delivered, not yet acknowledged)."""
    sids = await redis.smembers(inv_keys.STREAMS)
    keys = [inv_keys.events(_s(s)) for s in sids]
    total_lag = total_pending = 0
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.xinfo_groups(key)
            pipe.xlen(key)
        replies = await pipe.execute(raise_on_error=False)
    for groups, length in zip(replies[::2], replies[1::2], strict=True):
        if isinstance(groups, Exception):
            continue  # no such key yet: nothing waiting
        mine = next((g for g in groups if _s(g.get("name")) == group), None)
        if mine is None:
            total_lag += int(length) if not isinstance(length, Exception) else 0
            continue
        total_pending += int(mine.get("pending") or 0)
        # `lag` is None when Redis cannot tell (after deletions); the length bounds it.
        g_lag = mine.get("lag")
        total_lag += int(g_lag) if g_lag is not None else int(length)
    return {"lag": total_lag, "pending": total_pending, "streams": len(keys)}


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _fields(fields: dict[Any, Any]) -> dict[str, Any]:
    return {_s(k): v for k, v in fields.items()}


def _entries(resp: Any) -> list[Entry]:
    out: list[Entry] = []
    if not resp:
        return out
    for key, messages in resp:
        for entry_id, fields in messages:
            if fields is not None:
                out.append((_s(key), _s(entry_id), _fields(fields)))
    return out


class DrainerTask:
    """A drainer running as a background task of a service process."""

    def __init__(self, drainer: Drainer, stop_timeout_s: float = 10.0) -> None:
        self.drainer = drainer
        self.stop_timeout_s = stop_timeout_s
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.drainer.run(self._stop), name="order-drainer")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is None:
            return
        try:
            # Lets the batch in hand commit and be acknowledged; past the timeout it is
            # cancelled and its entries stay pending for XAUTOCLAIM.
            await asyncio.wait_for(self._task, self.stop_timeout_s)
        except TimeoutError:
            log.warning("drainer %s did not stop in time; cancelled", self.drainer.consumer)
        except Exception:
            log.exception("drainer %s failed", self.drainer.consumer)
