"""The hub's periodic work: heartbeats and the slow-consumer check, likes, viewer counts;
and the running of its loops (the lease renewal of realtime/leases.py among them).

One task per loop and process, whatever the number of sockets: there is no task per
connection (realtime/server.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from outage import REDIS, FailureLog, redis_down
from realtime import keys
from realtime.messages import PING_FRAME, now_ms
from realtime.publish import lua
from realtime.settings import HubSettings

if TYPE_CHECKING:
    from realtime.room import Room

log = logging.getLogger("live.realtime")

STOP_TIMEOUT_S = 5.0  # for the hub's own loops to end on shutdown


class HubLoops:
    def __init__(
        self,
        redis: Redis,
        settings: HubSettings,
        rooms: dict[str, Room],
        process_id: str,
        drop_room_if_empty: Callable[[str], Coroutine[Any, Any, None]],
    ) -> None:
        self.settings = settings
        self.rooms = rooms  # the hub's own dict: read here, changed by the hub only
        self.process_id = process_id
        self._drop_room_if_empty = drop_room_if_empty
        self._likes: AsyncScript = lua("likes.lua").register(redis)
        self._viewers: AsyncScript = lua("viewers.lua").register(redis)
        self._likes_retry: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        # Each loop also ends when this is set, not only on its cancel: a cancellation
        # swallowed inside a Redis call must not keep a loop (and the worker's shutdown)
        # going. The hub sets it first thing in its stop.
        self.stopping = False
        # A failure is logged once per kind, not once per turn; Redis being away is said
        # once per outage by outage.REDIS.
        self._failures = {
            name: FailureLog(log, f"hub {name}") for name in ("likes", "viewers", "leases")
        }

    def failed(self, name: str, exc: BaseException) -> None:
        if redis_down(exc):
            REDIS.failed(f"the hub's {name} loop", exc)
        else:
            self._failures[name].failed(exc)

    def succeeded(self, name: str) -> None:
        self._failures[name].succeeded()

    # --- lifecycle -------------------------------------------------------------------

    def start(self, renew_leases: Coroutine[Any, Any, None]) -> None:
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="hub-heartbeat"),
            asyncio.create_task(self._likes_loop(), name="hub-likes"),
            asyncio.create_task(self._viewers_loop(), name="hub-viewers"),
            asyncio.create_task(renew_leases, name="hub-leases"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._loop_done)

    def _loop_done(self, task: asyncio.Task[None]) -> None:
        # A loop ends only on stop; anything else must not go unnoticed.
        if not task.cancelled() and task.exception() is not None:
            log.error("hub loop %s died", task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        """End the loops (waiting at most STOP_TIMEOUT_S), then take this process's
        viewers out of every stream's count."""
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
        for sid in list(self.rooms):
            try:
                await self._report_viewers(sid, 0)
            except Exception:
                log.warning("could not clear viewer count of %s", sid, extra={"stream": sid})

    # --- the loops -------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        s = self.settings
        period = min(s.ping_interval_s, s.ping_timeout_s, s.stall_timeout_s) / 2
        loop = asyncio.get_running_loop()
        while not self.stopping:
            await asyncio.sleep(period)
            now = loop.time()
            for room in list(self.rooms.values()):
                for conn in list(room.members):
                    if conn.paused:
                        continue  # a backed-up socket is the stall check's business
                    if conn.pong_due:
                        if now > conn.pong_due:
                            log.info("viewer of %s missed its pong; dropping", room.sid,
                                     extra=conn.log_context())
                            conn.closing = True
                            conn.transport.abort()
                    elif now >= conn.next_ping:
                        conn.transport.write(PING_FRAME)
                        conn.pong_due = now + s.ping_timeout_s
                        conn.next_ping = now + s.ping_interval_s
                for conn in list(room.paused):
                    if now - conn.paused_at > s.stall_timeout_s or (
                        conn.transport.get_write_buffer_size() > s.write_hard_cap
                    ):
                        log.info("viewer of %s too slow; closing with 1008", room.sid,
                                 extra=conn.log_context())
                        conn.close(1008, "too slow")

    async def _likes_loop(self) -> None:
        interval = self.settings.likes_interval_ms / 1000
        while not self.stopping:
            await asyncio.sleep(interval)
            for sid, room in list(self.rooms.items()):
                if room.likes or sid in self._likes_retry:
                    taps, room.likes = room.likes, 0
                    try:
                        wait = await self._send_likes(sid, taps)
                    except Exception as exc:
                        self.failed("likes", exc)
                        room.likes += taps
                        continue
                    self.succeeded("likes")
                    if wait > 0:
                        self._likes_retry.add(sid)
                    else:
                        self._likes_retry.discard(sid)

    async def _send_likes(self, sid: str, taps: int) -> int:
        return int(
            await self._likes(
                keys=[keys.seq(sid), keys.history(sid), keys.likes_pending(sid),
                      keys.likes_gate(sid), keys.stats(sid)],
                args=[keys.channel(sid), now_ms(), self.settings.history_size, taps,
                      self.settings.likes_interval_ms],
            )
        )

    async def _viewers_loop(self) -> None:
        interval = self.settings.viewers_interval_ms / 1000
        while not self.stopping:
            await asyncio.sleep(interval)
            for sid, room in list(self.rooms.items()):
                try:
                    await self._report_viewers(sid, len(room.members))
                    await self._drop_room_if_empty(sid)
                except Exception as exc:
                    self.failed("viewers", exc)
                else:
                    self.succeeded("viewers")

    async def _report_viewers(self, sid: str, count: int) -> int:
        s = self.settings
        return int(
            await self._viewers(
                keys=[keys.seq(sid), keys.history(sid), keys.viewer_counts(sid),
                      keys.viewers_gate(sid), keys.stats(sid)],
                args=[keys.channel(sid), now_ms(), s.history_size, self.process_id, count,
                      int(s.viewers_interval_ms * 3), s.viewers_interval_ms],
            )
        )
