"""One process's view of whether Redis answers.

The first failure anywhere in the process logs one line and starts a probe (a PING
every half second); the probe's first success logs one line and ends the outage.
Callers only report failures (`REDIS.failed(...)`), so the hot paths pay nothing while
Redis is up. Each worker process keeps its own view, so `--workers N` logs N pairs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, TryAgainError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("live.outage")

# What an unreachable, restarting (LOADING is a ConnectionError subclass) or
# failing-over (a replica answers READONLY) Redis raises.
DOWN_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    TryAgainError,
)
# What clients are told to wait before trying again (the `Retry-After` header).
RETRY_AFTER_S = 2
PROBE_INTERVAL_S = 0.5

Probe = Callable[[], Awaitable[Any]]


def redis_down(exc: BaseException) -> bool:
    """Whether `exc` means Redis is unreachable (as opposed to a bad command)."""
    return isinstance(exc, DOWN_ERRORS)


class Outage:
    def __init__(self, name: str, probe_interval_s: float = PROBE_INTERVAL_S) -> None:
        self.name = name
        self.probe_interval_s = probe_interval_s
        self.down_since: float | None = None
        self.outages = 0
        self._probe: Probe | None = None
        self._task: asyncio.Task[None] | None = None
        self._back = asyncio.Event()
        self._back.set()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def attach(self, probe: Probe | None) -> None:
        """The check that tells the outage is over (e.g. `redis.ping`). Without one,
        the outage ends at the next `ok()` a caller reports."""
        self._probe = probe

    def failed(self, where: str, exc: BaseException) -> None:
        """Report a failure; logs only the first of an outage."""
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        self._back.clear()
        self.outages += 1
        log.error(
            "%s unavailable (noticed by %s: %s: %s); requests get 503 meanwhile",
            self.name, where, type(exc).__name__, exc,
        )
        if self._probe is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            if self._task is None or self._task.done():
                self._task = loop.create_task(self._probe_until_back(), name="outage-probe")

    def ok(self) -> None:
        """Report a success; ends an outage (one line)."""
        if self.down_since is None:
            return
        took = time.monotonic() - self.down_since
        self.down_since = None
        self._back.set()
        log.warning("%s back after %.1f s", self.name, took)

    async def wait_back(self, timeout_s: float) -> bool:
        """Sleep until the outage is over or `timeout_s` passed (loops use it to back
        off instead of spinning); True when it is over."""
        try:
            await asyncio.wait_for(self._back.wait(), timeout_s)
        except TimeoutError:
            pass
        return not self.down

    async def _probe_until_back(self) -> None:
        while self.down_since is not None and self._probe is not None:
            await asyncio.sleep(self.probe_interval_s)
            try:
                await asyncio.wait_for(self._probe(), 2.0)
            except Exception:
                continue
            self.ok()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._probe = None


# The process's Redis. A service process attaches its client's PING at start.
REDIS = Outage("Redis")
