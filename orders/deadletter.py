"""Events set aside because they can never be applied, per stream, with global counts.

An entry goes here when it is malformed (orders/events.py cannot read it) or when SQL
refuses it for a reason that will not go away (a value out of a column's range...): the
drainer splits a refused batch until the entry is alone (orders/apply.py). It is copied
to `inv:{sid}:dead` (a Redis Stream in the stream's own slot) with the reason, then
acknowledged, so the entries behind it drain.

Two global keys keep `/healthz` O(1) however many streams exist: a hash stream id →
dead letters held, and a total. They are written after the per-stream copy (another
Cluster slot), so a crash in between undercounts until `live reconcile` looks; the
per-stream streams are the record.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from inventory import keys as inv_keys
from rediskit.codec import text

STREAMS = "deadletter:{orders}:streams"  # hash stream id -> dead letters it holds
TOTAL = "deadletter:{orders}:total"  # dead letters held over every stream
MAXLEN = 10_000  # per stream; far beyond any real count, a guard against a flood


def stream_of_key(events_key: str) -> str:
    """`inv:{sid}:events` -> sid."""
    return events_key[events_key.index("{") + 1 : events_key.index("}")]


async def set_aside(
    redis: Redis, group: str, items: list[tuple[str, str, dict[str, Any], str]]
) -> None:
    """Keep `items` (events key, entry id, fields, why) in their streams' dead letters."""
    per_stream: dict[str, int] = {}
    async with redis.pipeline(transaction=False) as pipe:
        for key, entry_id, fields, why in items:
            sid = stream_of_key(key)
            record = {"group": group, "entry": entry_id, "why": why[:2000]}
            for name, value in fields.items():
                record[f"f_{name}"] = value
            pipe.xadd(inv_keys.dead_letters(sid), record, maxlen=MAXLEN, approximate=True)
            per_stream[sid] = per_stream.get(sid, 0) + 1
        await pipe.execute()
    async with redis.pipeline(transaction=True) as pipe:
        for sid, n in per_stream.items():
            pipe.hincrby(STREAMS, sid, n)
        pipe.incrby(TOTAL, len(items))
        await pipe.execute()


async def totals(redis: Redis) -> dict[str, int]:
    """`{"streams", "events"}`: streams holding dead letters, and how many in all."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hlen(STREAMS)
        pipe.get(TOTAL)
        streams, total = await pipe.execute()
    return {"streams": int(streams or 0), "events": max(0, int(total or 0))}


dead_letter_totals = totals


async def listed(
    redis: Redis, sid: str, limit: int = 1000, group: str | None = None
) -> list[dict[str, Any]]:
    """The stream's dead letters, oldest first: `id` (in the dead-letter stream),
    `entry` (the original event id), `group`, `why`, `type`, `data`. With `group`, only
    those that group's drainers set aside: each consumer group drains into an order
    store of its own, and meets (and sets aside) a poison event on its own."""
    out = []
    for dead_id, fields in await redis.xrange(inv_keys.dead_letters(sid), count=limit):
        f = {text(k): text(v) for k, v in fields.items()}
        if group is not None and f.get("group", group) != group:
            continue
        out.append(
            {
                "id": text(dead_id),
                "entry": f.get("entry", ""),
                "group": f.get("group", ""),
                "why": f.get("why", ""),
                "type": f.get("f_type", ""),
                "data": f.get("f_data", ""),
            }
        )
    return out


async def recount(redis: Redis, sid: str) -> int:
    """Set the stream's global count to what its dead letters hold (repairs the count
    after a crash between the two writes of `set_aside`); returns that number."""
    held = int(await redis.xlen(inv_keys.dead_letters(sid)))
    counted = int(await redis.hget(STREAMS, sid) or 0)
    if held != counted:
        async with redis.pipeline(transaction=True) as pipe:
            if held:
                pipe.hset(STREAMS, sid, held)
            else:
                pipe.hdel(STREAMS, sid)
            pipe.incrby(TOTAL, held - counted)
            await pipe.execute()
    return held


async def remove(redis: Redis, sid: str, dead_ids: list[str]) -> int:
    """Take the given dead letters out (replayed or dropped); keeps the counts."""
    if not dead_ids:
        return 0
    removed = int(await redis.xdel(inv_keys.dead_letters(sid), *dead_ids))
    left = int(await redis.xlen(inv_keys.dead_letters(sid)))
    async with redis.pipeline(transaction=True) as pipe:
        if left:
            pipe.hset(STREAMS, sid, left)
        else:
            pipe.hdel(STREAMS, sid)
        pipe.decrby(TOTAL, removed)
        await pipe.execute()
    if not left:
        await redis.delete(inv_keys.dead_letters(sid))
    return removed
