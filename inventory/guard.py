"""The freshness guard: Redis changes a stream's stock only once it is known not to be
behind the order store.

SQL is the durable record; Redis can come back with older state than SQL (restored
snapshot, lost AOF tail, failover to a replica that lacked the last writes). Every
server start or failover gives Redis a new `run_id`, and nothing of Redis's own state
can tell it that it went back in time, so each stream records the `run_id` of the
server on which its stock was last checked against SQL (`inv:{sid}:checked`). Every
inventory script compares it with the running server's first (lua/common.lua) and
refuses with `STREAM_RECOVERING` when they differ: the stream is rebuilt from SQL
(lua/rebuild.lua, run by orders/recovery.py) before anything more is sold. The check is
atomic with the sale, so no window lets a unit be sold twice.

`Guard` runs a script call; on `STREAM_RECOVERING` it asks its `recover` hook (wired by
the service: a rebuild from SQL) and runs the call once more. Without a hook, or when
the rebuild fails (SQL down), the caller gets `StreamRecovering` (HTTP 503
`stream_recovering`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ResponseError

from domain.errors import DomainError
from outage import RETRY_AFTER_S

RECOVERING = "STREAM_RECOVERING"
CHECK_ROUNDS = 3

T = TypeVar("T")
Recover = Callable[[str], Awaitable[object]]


class StreamRecovering(DomainError):
    """The stream must be checked against the order store before it changes."""

    def __init__(self, sid: str) -> None:
        super().__init__(
            "stream_recovering",
            f"stream {sid} is being checked against the order store after a Redis "
            "restart or failover; try again shortly",
            retry_after=RETRY_AFTER_S,
        )
        self.sid = sid


def is_recovering(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and str(exc).startswith(RECOVERING)


class Guard:
    def __init__(self, recover: Recover | None = None) -> None:
        self.recover = recover

    async def __call__(self, sid: str, call: Callable[[], Awaitable[T]]) -> T:
        # A few rounds, not one: on a Redis Cluster a slot moving to another master (or a
        # failover) while a stream is rebuilt can leave the check on the server that just
        # gave the slot away, and the call then meets yet another server.
        for attempt in range(CHECK_ROUNDS):
            try:
                return await call()
            except ResponseError as exc:
                if not is_recovering(exc):
                    raise
            if self.recover is None or attempt == CHECK_ROUNDS - 1:
                break
            await self.recover(sid)  # raises StreamRecovering when it cannot rebuild
        raise StreamRecovering(sid)
