"""Times each command a Redis client sends (`livecart_redis_roundtrip_seconds`)."""

from __future__ import annotations

import time
from typing import Any, TypeVar

from telemetry.metrics import REDIS_ROUNDTRIP

C = TypeVar("C")


def timed_redis(client: C) -> C:
    """Wrap the client's `execute_command`, through which every single command and
    script call goes (pipelines and pub/sub reads do not: they are not one round trip
    each). Works on `Redis` and `RedisCluster` alike."""
    send = client.execute_command  # type: ignore[attr-defined]
    children: dict[str, Any] = {}

    async def execute_command(*args: Any, **options: Any) -> Any:
        start = time.perf_counter()
        try:
            return await send(*args, **options)
        finally:
            name = str(args[0]).upper() if args else "?"
            child = children.get(name)
            if child is None:
                child = children[name] = REDIS_ROUNDTRIP.labels(name)
            child.observe(time.perf_counter() - start)

    client.execute_command = execute_command  # type: ignore[attr-defined]
    return client
