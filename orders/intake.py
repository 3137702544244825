"""The Redis half of the drainer: at-least-once delivery of the inventory's events.

Every stream listed in `live:streams` is read through the consumer group (XREADGROUP,
created at id 0 so no event before the group is missed); entries a dead drainer left
pending are taken over once idle long enough (XAUTOCLAIM); an entry is acknowledged
(XACK) only when the caller says its batch committed. Redelivery is the price of never
losing an entry; the SQL half (orders/apply.py) makes applying one twice a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from inventory import keys as inv_keys
from orders.cluster import StreamReader
from orders.drain_settings import DrainSettings
from rediskit.codec import text

log = logging.getLogger("orders.drain")  # the drainer's lines, whichever half logs them

Entry = tuple[str, str, dict[str, Any]]  # stream key, entry id, fields

# XREADGROUP takes every stream key as an argument; keep each call's size bounded.
KEYS_PER_READ = 256


@dataclass
class IntakeStats:
    claimed: int = 0  # entries taken over from dead (or stuck) drainers


class Intake:
    def __init__(
        self,
        redis: Redis,
        settings: DrainSettings,
        consumer: str,
        stats: IntakeStats | None = None,
        on_refresh: Callable[[set[str]], None] | None = None,
    ) -> None:
        """`on_refresh(keys)`: told the events keys read from now on, after each
        refresh of the registry (retention forgets the others)."""
        self.redis = redis
        self.settings = settings
        self.group = settings.group
        self.consumer = consumer
        self.stats = stats or IntakeStats()
        self.on_refresh = on_refresh
        self.keys: list[str] = []
        self._grouped: set[str] = set()
        self._next_refresh = 0.0
        # When the next claim pass is due (time.monotonic()).
        self.next_claim = 0.0
        self._claim_cursor: dict[str, str] = {}
        self._hot: set[str] = set()  # event keys that filled their share of the last read
        self._rotation = 0
        # One XREADGROUP per read, or one per hash slot on a Redis Cluster.
        self._xreadgroup = StreamReader(redis, self.group, consumer, settings.block_ms)
        self.log_context = {"consumer": consumer}

    def restart(self) -> None:
        """After a failure of the loop: make sure of every group again, at once."""
        self._grouped.clear()
        self._next_refresh = 0.0

    def refresh_soon(self) -> None:
        """Read the registry again before the next read (streams were retired)."""
        self._next_refresh = 0.0

    async def take(self) -> list[Entry]:
        """The next batch: entries claimed from dead drainers when that pass is due,
        else new entries (waiting up to `block_ms` for them)."""
        now = time.monotonic()
        if now >= self._next_refresh:
            await self.refresh_streams()
            self._next_refresh = now + self.settings.refresh_ms / 1000
        entries: list[Entry] = []
        if now >= self.next_claim:
            entries = await self.claim()
            self.next_claim = now + self.settings.claim_idle_ms / 2000
        if not entries:
            entries = await self.read()
        return entries

    async def refresh_streams(self) -> None:
        if self.settings.only:
            # A shard's own streams, without reading the whole registry; one not created
            # yet (or retired) has no events key and is skipped below.
            sids = set(self.settings.only)
        else:
            sids = {text(sid) for sid in await self.redis.smembers(inv_keys.STREAMS)}
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
        self.keys = keys
        kept = set(keys)
        for key in self._claim_cursor.keys() - kept:
            del self._claim_cursor[key]
        if self.on_refresh is not None:
            self.on_refresh(kept)

    async def read(self) -> list[Entry]:
        if not self.keys:
            await asyncio.sleep(self.settings.block_ms / 1000)
            return []
        # Streams that filled their share last time (a flash sale's backlog) are read
        # first, with half the batch; the rest share what is left, at least one entry
        # each. A fair share alone would give a hot stream among hundreds of quiet ones
        # one entry per read.
        hot = [key for key in self.keys if key in self._hot]
        cold = [key for key in self.keys if key not in self._hot]
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
                resp = await self._xreadgroup(chunk, count, block)
            except ResponseError as exc:
                # NOGROUP: a stream key was deleted (retired) or deleted and re-created;
                # UNBLOCKED: it was deleted while this read waited on it.
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                await self._regroup(chunk)
                return out
            for key, messages in resp or ():
                if len(messages) >= count:
                    self._hot.add(text(key))
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
        self.keys = [key for key in self.keys if key not in gone]
        self._grouped -= set(chunk)
        self._next_refresh = 0.0

    async def claim(self) -> list[Entry]:
        """Take over entries a dead (or stuck) drainer left pending too long."""
        out: list[Entry] = []
        for key in self.keys:
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
            cursor, claimed = text(resp[0]), resp[1]
            self._claim_cursor[key] = cursor
            deleted = resp[2] if len(resp) > 2 else []
            if deleted:
                log.error("pending entries %s of %s were trimmed undrained", deleted, key)
                await self.redis.xack(key, self.group, *deleted)
            for entry_id, fields in claimed:
                if fields is not None:
                    out.append((key, text(entry_id), _fields(fields)))
        if out:
            self.stats.claimed += len(out)
            log.warning("drainer %s claimed %d idle pending entries", self.consumer, len(out),
                        extra=self.log_context)
        return out

    async def ack(self, entries: list[Entry]) -> list[str]:
        """Acknowledge `entries` (their batch committed); returns their stream keys."""
        by_key: dict[str, list[str]] = {}
        for key, entry_id, _ in entries:
            by_key.setdefault(key, []).append(entry_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, ids in by_key.items():
                pipe.xack(key, self.group, *ids)
            await pipe.execute()
        return list(by_key)


def _fields(fields: dict[Any, Any]) -> dict[str, Any]:
    return {text(k): v for k, v in fields.items()}


def _entries(resp: Any) -> list[Entry]:
    out: list[Entry] = []
    if not resp:
        return out
    for key, messages in resp:
        for entry_id, fields in messages:
            if fields is not None:
                out.append((text(key), text(entry_id), _fields(fields)))
    return out
