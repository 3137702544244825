"""A background task that does one turn of work every interval until it is stopped: the
shape of the inventory sweeper and of the drain lag report."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable


class Periodic:
    """Awaits `turn()`, then sleeps `interval_s` (times a random factor within
    1 ± `jitter`, so several processes do not act in lockstep), until `stop()`.

    A turn that raises never ends the loop: `on_error(exc)` is awaited (log there, and
    wait longer there when the failure calls for it) and the next turn follows the
    interval as usual."""

    def __init__(
        self,
        name: str,
        turn: Callable[[], Awaitable[object]],
        interval_s: float,
        on_error: Callable[[Exception], Awaitable[None]],
        jitter: float = 0.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.name = name
        self.turn = turn
        self.interval_s = interval_s
        self.on_error = on_error
        self.jitter = jitter
        self.stop_timeout_s = stop_timeout_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # The flag as well as the cancel: a cancellation that lands inside a Redis call
        # can be swallowed there (seen under load: a loop went on after cancel() and held
        # up the worker's shutdown). The loop then ends at its next turn.
        self._stopping = True
        task.cancel()
        try:
            await asyncio.wait_for(task, self.stop_timeout_s)
        except (asyncio.CancelledError, TimeoutError):
            pass

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.turn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self.on_error(exc)
            factor = random.uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else 1.0
            await asyncio.sleep(self.interval_s * factor)
