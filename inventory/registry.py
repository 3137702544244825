"""Walking the registry of streams (`keys.STREAMS`) a page at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator

from redis.asyncio import Redis

from inventory import keys
from rediskit.codec import text


async def stream_pages(redis: Redis, count: int = 500) -> AsyncIterator[list[str]]:
    """The registered stream ids, about `count` per page (SSCAN: a stream registered or
    removed during the walk may or may not be seen; every other one is, once or more)."""
    cursor: int | str = 0
    while True:
        cursor, page = await redis.sscan(keys.STREAMS, cursor, count=count)
        if page:
            yield [text(sid) for sid in page]
        if int(cursor) == 0:
            return
