"""Counters of a stream kept by the hub, for the host's stats endpoint."""

from __future__ import annotations

from redis.asyncio import Redis

from realtime import keys

FIELDS = ("viewers", "peak_viewers", "comments", "likes")


async def read_stats(redis: Redis, sid: str) -> dict[str, int]:
    """`viewers` (now, all processes), `peak_viewers`, `comments`, `likes`."""
    values = await redis.hmget(keys.stats(sid), list(FIELDS))
    return {name: int(v) if v else 0 for name, v in zip(FIELDS, values, strict=True)}
