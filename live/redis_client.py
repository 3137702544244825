"""The Redis clients of a service process."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis


def redis_client(url: str, max_connections: int = 200, decode_responses: bool = True) -> Redis:
    """A pooled client whose callers wait (up to 10 s) for a free connection in a burst,
    instead of failing with "Too many connections"."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        decode_responses=decode_responses,
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)
