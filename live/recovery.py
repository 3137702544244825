"""The service's answer to the freshness guard (inventory/guard.py): rebuild a stream
from the order store the first time it changes on a new Redis server.

One rebuild per stream at a time in this process (concurrent buyers of the stream wait
for it); other processes may rebuild the same stream at once, which is harmless (the
script does nothing for a stream already checked). A rebuild that cannot run (SQL or
Redis unreachable) surfaces as 503 `stream_recovering` / `unavailable`.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory.guard import StreamRecovering
from orders.recovery import Rebuilt, rebuild_stream
from outage import FailureLog, redis_down

log = logging.getLogger("live.recovery")

REBUILD_TIMEOUT_S = 10.0


class StreamRecovery:
    def __init__(self, redis: Redis, engine: AsyncEngine) -> None:
        self.redis = redis
        self.engine = engine
        self._running: dict[str, asyncio.Future[Rebuilt]] = {}
        self._failures = FailureLog(log, "rebuilding a stream from the order store")
        self.rebuilt = 0

    async def __call__(self, sid: str) -> Rebuilt:
        running = self._running.get(sid)
        if running is not None:
            return await asyncio.shield(running)
        fut: asyncio.Future[Rebuilt] = asyncio.get_running_loop().create_future()
        self._running[sid] = fut
        try:
            result = await asyncio.wait_for(
                rebuild_stream(self.redis, self.engine, sid), REBUILD_TIMEOUT_S
            )
        except Exception as exc:
            error: BaseException = exc
            if not redis_down(exc):
                self._failures.failed(exc, "the stream answers 503 stream_recovering")
                error = StreamRecovering(sid)
            fut.set_exception(error)
            fut.exception()  # retrieved: waiters re-raise it, nobody else must
            raise error from None
        finally:
            self._running.pop(sid, None)
        self._failures.succeeded()
        fut.set_result(result)
        if not result.fresh and not result.gone:
            self.rebuilt += 1
            if result.changed:
                log.warning(
                    "stream %s was behind the order store on this Redis server; rebuilt "
                    "from SQL: %s", sid, result.summary(),
                )
            else:
                log.info("stream %s checked against the order store: it agrees", sid)
        return result
