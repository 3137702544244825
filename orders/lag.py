"""How many events wait in Redis for the order store (`/healthz`'s `drain`)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from inventory import keys as inv_keys
from orders.drain_settings import GROUP
from rediskit.codec import text


async def lag(redis: Redis, group: str = GROUP) -> dict[str, int]:
    """Events not yet in SQL, over every stream: `lag` (never delivered to a drainer)
    and `pending` (delivered, not yet acknowledged)."""
    sids = await redis.smembers(inv_keys.STREAMS)
    keys = [inv_keys.events(text(s)) for s in sids]
    total_lag = total_pending = 0
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.xinfo_groups(key)
            pipe.xlen(key)
        replies = await pipe.execute(raise_on_error=False)
    for groups, length in zip(replies[::2], replies[1::2], strict=True):
        if isinstance(groups, Exception):
            continue  # no such key yet: nothing waiting
        n = int(length) if not isinstance(length, Exception) else 0
        stream_lag, pending = waiting(groups, n, group)
        total_lag += stream_lag
        total_pending += pending
    return {"lag": total_lag, "pending": total_pending, "streams": len(keys)}


def waiting(groups: list[dict[Any, Any]], length: int, group: str) -> tuple[int, int]:
    """(lag, pending) of one events stream for `group`, from its XINFO GROUPS and XLEN:
    without the group yet, every entry waits."""
    mine = next((g for g in groups if text(g.get("name")) == group), None)
    if mine is None:
        return length, 0
    # `lag` is None when Redis cannot tell (after deletions); the length bounds it.
    g_lag = mine.get("lag")
    return (int(g_lag) if g_lag is not None else length), int(mine.get("pending") or 0)
