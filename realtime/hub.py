"""The hub of one service process: its rooms, their subscriptions (realtime/pubsub.py),
and the sockets' way in and out. What the viewers ask on their sockets is answered by
realtime/viewer_requests.py, the sockets' places by realtime/leases.py, and the periodic
work (heartbeats, slow consumers, likes, viewer counts) runs in realtime/hub_loops.py."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from domain.errors import DomainError
from outage import REDIS, redis_down
from realtime import keys
from realtime import personal as viewer_channel
from realtime.backend import Backend
from realtime.hub_loops import HubLoops
from realtime.leases import Leases
from realtime.messages import Message, personal
from realtime.publish import lua
from realtime.pubsub import SubscribeError, Subscriptions
from realtime.room import Room
from realtime.settings import HubSettings
from realtime.viewer_requests import ViewerRequests

if TYPE_CHECKING:
    from realtime.server import HubProtocol

log = logging.getLogger("live.realtime")


class Hub:
    def __init__(self, redis: Redis, backend: Backend, settings: HubSettings) -> None:
        # Bytes client: messages go from Redis to the sockets without a decode/encode.
        self.redis = redis
        self.backend = backend
        self.settings = settings
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.rooms: dict[str, Room] = {}
        self.subs = Subscriptions(redis, self._deliver, self._resync)
        self._tasks: set[asyncio.Task[Any]] = set()
        # The parts are handed what they use (the hub's own `rooms` dict, `spawn`, and
        # the viewer-count loop `_drop_room_if_empty`); none of them imports this module.
        self.requests = ViewerRequests(
            settings, backend, self.spawn, lua("comment.lua").register(redis)
        )
        self.loops = HubLoops(redis, settings, self.rooms, self.process_id,
                              self._drop_room_if_empty)
        self.leases = Leases(redis, settings, self.process_id, self.rooms, self.spawn,
                             self.loops)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.subs.start()
        self.loops.start(renew_leases=self.leases.renew_loop())

    async def stop(self) -> None:
        # The loops' flag before anything is awaited (hub_loops.py says why).
        self.loops.stopping = True
        conns = [conn for room in list(self.rooms.values()) for conn in list(room.members)]
        held = self.leases.detach(conns)
        for conn in conns:
            conn.close(1001, "server shutting down")
        # Released now rather than from connection_lost: the tasks it spawns die with
        # the hub.
        await self.leases.release_all(held)
        await self.loops.stop()
        for task in list(self._tasks):
            task.cancel()
        try:
            await self.subs.stop()
        except Exception:
            log.warning("could not close the pub/sub connections")

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("hub task failed", exc_info=task.exception())

    # --- rooms and the subscription --------------------------------------------------

    async def _join(self, sid: str) -> Room:
        """The stream's room, its subscription confirmed by Redis (so a `hello` seq taken
        after this misses nothing); counted as `joining` until the caller is done.
        Raises SubscribeError when Redis does not confirm in time."""
        room = self.rooms.get(sid)
        if room is None:
            room = self.rooms[sid] = Room(self, sid)
        room.joining += 1
        try:
            await self.subs.subscribe(sid)
        except BaseException:
            room.joining -= 1
            raise
        return room

    def _deliver(self, sid: str, raw: bytes) -> None:
        room = self.rooms.get(sid)
        if room is None:
            return
        if raw.startswith(viewer_channel.MARKER):  # for one viewer's sockets, not everyone
            try:
                viewer_channel.deliver(room, raw)
            except Exception:
                log.exception("undecodable per-viewer message of stream %s", sid)
            return
        try:
            msg = Message(raw)
        except Exception:
            log.exception("undecodable broadcast message of stream %s", sid)
            return
        room.deliver(msg)

    def _resync(self, sid: str) -> None:
        """The stream's subscription was lost and is back: fetch what was published
        meanwhile from the history."""
        room = self.rooms.get(sid)
        if room is None:
            return
        if room.last is not None:
            room.resync()
            return
        for conn in list(room.members):  # nothing delivered here yet: each from its hello
            room.demote(conn)
            conn.start_catch_up()

    async def history(self, sid: str, first: int) -> list[Message]:
        entries = await self.redis.xrange(
            keys.history(sid), min=f"{first}-0", max="+", count=self.settings.history_size
        )
        return [Message(fields[b"m"]) for _, fields in entries]

    async def _drop_room_if_empty(self, sid: str) -> None:
        room = self.rooms.get(sid)
        if room is None or room.members or room.joining:
            return
        del self.rooms[sid]
        await self.subs.unsubscribe(sid)

    # --- connections -----------------------------------------------------------------

    async def admit(self, conn: HubProtocol, response: Any, token: str) -> None:
        """Check the token and the stream, then open the socket and send `hello`.

        Whatever goes wrong on the way, the client gets an answer: a 503 while the
        handshake is still open, a 1011 close after it."""
        try:
            await self._admit(conn, response, token)
        except SubscribeError as exc:
            # Redis unreachable or slow: the pub/sub link logs that once, not per viewer.
            log.debug("viewer of %s refused: %s", conn.sid, exc)
            if not conn.closing:
                conn.reject(503, "service unavailable, try again\n")
        except Exception as exc:
            if redis_down(exc):
                REDIS.failed("a websocket handshake", exc)
            else:
                log.exception("admitting a viewer of %s failed", conn.sid,
                              extra={"stream": conn.sid})
            if conn.room is None and not conn.closing:
                conn.reject(503, "service unavailable, try again\n")
            else:
                conn.close(1011, "internal error")

    async def _admit(self, conn: HubProtocol, response: Any, token: str) -> None:
        sid = conn.sid
        viewer = None
        if token:
            try:
                viewer = self.backend.verify(token)
            except DomainError as exc:
                conn.reject(401, f"{exc.detail}\n")
                return
        room = await self._join(sid)
        try:
            seq, state = await self._state(sid)
            if state is None:
                conn.reject(404, "unknown stream\n")
                return
            if conn.closing or conn.transport.is_closing():
                return
            ended = state.get("status") == "ended" or room.ended
            if not ended and not await self.leases.take(conn, viewer):
                return
            conn.viewer = viewer
            conn.opened(response)
            conn.after = seq
            conn.room = room
            conn.send(personal("hello", state, conn.binary, seq))
            if ended or room.ended:
                conn.close(1000, "stream ended")
                return
            room.add(conn)
        except BaseException:
            self.leases.release(conn)
            raise
        finally:
            room.joining -= 1

    async def _state(self, sid: str) -> tuple[int, dict[str, Any] | None]:
        # seq first: a message between the two reads is delivered again, never missed.
        raw = await self.redis.get(keys.seq(sid))
        seq = int(raw) if raw else 0
        state = await self.backend.hello_state(sid)
        if state is not None:
            state["seq"] = seq
        return seq, state

    def disconnected(self, conn: HubProtocol) -> None:
        if conn.room is not None:
            conn.room.remove(conn)
        self.leases.release(conn)

    async def catch_up(self, conn: HubProtocol) -> None:
        """Bring one viewer from `conn.after` to the room's present, from the history."""
        room = conn.room
        try:
            entries = await self.history(conn.sid, conn.after + 1)
            lost = bool(entries) and entries[0].seq > conn.after + 1
            if not entries:
                raw = await self.redis.get(keys.seq(conn.sid))
                lost = int(raw or 0) > conn.after and not conn.pending
            if lost:
                seq, state = await self._state(conn.sid)
                if state is None or conn.closing:
                    return
                state["recovered"] = False
                conn.send(personal("hello", state, conn.binary, seq))
                conn.after = seq
                entries = []
        except Exception as exc:
            if redis_down(exc):
                REDIS.failed("a viewer's catch-up", exc)
            else:
                log.exception("catch-up of a viewer of %s failed", conn.sid,
                              extra=conn.log_context())
            entries = []
        if conn.closing or room is None:
            return
        pending, conn.pending = conn.pending, []
        conn.filling = False
        for msg in sorted([*entries, *pending], key=lambda m: m.seq):
            if msg.seq > conn.after:
                conn.push(msg)
        if conn in room.catching and (room.last is None or conn.after >= room.last):
            room.promote(conn)

    def on_request(self, conn: HubProtocol, msg: dict[str, Any]) -> None:
        """A viewer's message on its open socket (realtime/viewer_requests.py)."""
        self.requests.on_request(conn, msg)
