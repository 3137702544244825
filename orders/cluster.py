"""What the drainer does differently on a Redis Cluster, where one command (or script
run) may only name keys of one hash slot and every stream's keys sit in its own slot.

XREADGROUP: a chunk of events keys is read as one XREADGROUP per slot,
pipelined (redis-py sends each node its share in one round trip). BLOCK cannot wait on
keys of several slots at once: an empty read waits here instead, 5 ms after the first
empty one, twice as long after each further one, at most `block_ms`, and not at all
while events keep coming, so a quiet drainer costs a few reads a second and a busy one
does not wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

FIRST_WAIT_MS = 5

# What XREADGROUP answers: (key, [(entry id, fields), ...]) per key with entries.
Reply = list[tuple[Any, list[Any]]]


class StreamReader:
    def __init__(self, redis: Any, group: str, consumer: str, block_ms: int) -> None:
        self.redis = redis
        self.group = group
        self.consumer = consumer
        self.block_ms = block_ms
        self.cluster = isinstance(redis, RedisCluster)
        self._empty_reads = 0

    async def __call__(self, keys: list[str], count: int, block: int | None) -> Reply:
        """New entries of `keys` for this consumer, at most `count` per key; waits up to
        `block` ms for some when there are none (None: does not wait)."""
        if not self.cluster:
            resp = await self.redis.xreadgroup(
                self.group, self.consumer, dict.fromkeys(keys, ">"), count=count, block=block
            )
            return _pairs(resp)
        by_slot: dict[int, list[str]] = {}
        for key in keys:
            by_slot.setdefault(self.redis.keyslot(key), []).append(key)
        async with self.redis.pipeline(transaction=False) as pipe:
            for slot_keys in by_slot.values():
                pipe.xreadgroup(
                    self.group, self.consumer, dict.fromkeys(slot_keys, ">"), count=count
                )
            replies = await pipe.execute()
        out = [pair for resp in replies for pair in _pairs(resp)]
        if out or block is None:
            self._empty_reads = 0 if out else self._empty_reads
            return out
        wait_ms = min(self.block_ms, block, FIRST_WAIT_MS * 2 ** min(self._empty_reads, 16))
        self._empty_reads += 1
        await asyncio.sleep(wait_ms / 1000)
        return out


def _pairs(resp: Any) -> Reply:
    return [(key, messages) for key, messages in resp or ()]


async def run_script_many(
    redis: Any, script: AsyncScript, calls: Sequence[tuple[list[str], list[Any]]]
) -> list[Any]:
    """`script` once per (keys, args), each call's keys in one slot; the replies in order.
    One pipeline on a single server; on a Cluster, whose pipelines refuse scripts, the
    calls run concurrently (each goes straight to its slot's node)."""
    if isinstance(redis, RedisCluster):
        return list(await asyncio.gather(*(script(keys=k, args=a) for k, a in calls)))
    async with redis.pipeline(transaction=False) as pipe:
        for k, a in calls:
            await script(keys=k, args=a, client=pipe)
        return list(await pipe.execute())
