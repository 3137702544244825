"""Script calls made by concurrent requests in the same event-loop turn go to Redis as
one pipeline: one socket write and one round trip for a burst of buyers, instead of a
pooled connection each. Each call is still its own atomic script run."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

log = logging.getLogger("live.inventory")

Call = tuple[AsyncScript, list[str], list[Any], "asyncio.Future[Any]"]


class ScriptBatcher:
    def __init__(self, redis: Redis, max_batch: int = 256) -> None:
        self.redis = redis
        self.max_batch = max_batch
        self._pending: list[Call] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, fut))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.create_task(self._send(batch))
            self._tasks.add(task)  # keep a reference until it is done
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[Call]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for script, keys, args, _ in batch:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # connection trouble: every caller gets the error
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (script, keys, args, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue  # the caller went away
            if isinstance(result, NoScriptError):
                # The server lost its scripts (restart, SCRIPT FLUSH): this call goes
                # alone, and redis-py's Script loads the script again.
                try:
                    fut.set_result(await script(keys=keys, args=args))
                except Exception as exc:
                    if not fut.done():
                        fut.set_exception(exc)
            elif isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)
