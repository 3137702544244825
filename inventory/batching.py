"""Requests for the same stream made in one event-loop turn go to Redis together as one
script run over all of them, instead of one script call and round trip each. During a
flash sale thousands of buyers hit one stream at once: the per-call costs (the client's
command and reply handling, the server's script invocation) dominate the script's own
work, so sharing them is most of the throughput. Each request is still decided as if it
were alone, in order (see lua/reserve.lua); a batch is also atomic as a whole."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

# Runs one batch of a stream's items; returns one result per item, in order.
Send = Callable[[str, list[Any]], Awaitable[list[Any]]]


class Batcher:
    def __init__(self, send: Send, max_items: int = 64) -> None:
        """`max_items` bounds how long one script run keeps Redis busy (~30 us each)."""
        self._send = send
        self.max_items = max_items
        self._pending: dict[str, list[tuple[Any, asyncio.Future[Any]]]] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, group: str, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        items = self._pending.setdefault(group, [])
        items.append((item, fut))
        if len(items) >= self.max_items:
            self._start(group, self._pending.pop(group))
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for group, items in pending.items():
            self._start(group, items)

    def _start(self, group: str, items: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        task = asyncio.create_task(self._run(group, items))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _run(self, group: str, items: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            results = await self._send(group, [item for item, _ in items])
            if len(results) != len(items):
                raise RuntimeError(f"batch of {len(items)} got {len(results)} results")
        except BaseException as exc:  # connection trouble, a script error, shutdown
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), result in zip(items, results, strict=True):
            if not fut.done():  # else the caller went away; its item ran all the same
                fut.set_result(result)
