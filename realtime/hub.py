"""The hub of one service process: its rooms, their subscriptions (realtime/pubsub.py),
and the periodic work (heartbeats, slow consumers, likes, viewer counts)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from outage import REDIS, FailureLog, redis_down
from realtime import keys
from realtime import personal as viewer_channel
from realtime.backend import Backend, HubError, Viewer
from realtime.messages import PING_FRAME, Message, now_ms, personal
from realtime.publish import lua
from realtime.pubsub import SubscribeError, Subscriptions
from realtime.room import Room
from realtime.settings import HubSettings
from realtime.textnorm import normalize

if TYPE_CHECKING:
    from realtime.server import HubProtocol

log = logging.getLogger("live.realtime")

MAX_INFLIGHT = 4  # requests of one connection waiting on Redis or the buy handler
MAX_RESUME_SEQ = 2**53
STOP_TIMEOUT_S = 5.0  # for the hub's own loops to end on shutdown
LEASE_BATCH = 500  # sockets renewed per script call


def _script(redis: Redis, name: str) -> AsyncScript:
    return lua(name, broadcast=False).register(redis)


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
        self._loops: list[asyncio.Task[None]] = []
        self._comment: AsyncScript = lua("comment.lua").register(redis)
        self._likes: AsyncScript = lua("likes.lua").register(redis)
        self._viewers: AsyncScript = lua("viewers.lua").register(redis)
        self._conn_admit = _script(redis, "conn_admit.lua")
        self._conn_renew = _script(redis, "conn_renew.lua")
        self._likes_retry: set[str] = set()
        self._next_conn = 0
        self._stopping = False
        # The periodic loops log a failure once per kind, not once per turn; Redis
        # being away is said once per outage by outage.REDIS.
        self._loop_failures = {
            name: FailureLog(log, f"hub {name}") for name in ("likes", "viewers", "leases")
        }

    def _loop_failed(self, name: str, exc: BaseException) -> None:
        if redis_down(exc):
            REDIS.failed(f"the hub's {name} loop", exc)
        else:
            self._loop_failures[name].failed(exc)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.subs.start()
        self._loops = [
            asyncio.create_task(self._heartbeat_loop(), name="hub-heartbeat"),
            asyncio.create_task(self._likes_loop(), name="hub-likes"),
            asyncio.create_task(self._viewers_loop(), name="hub-viewers"),
            asyncio.create_task(self._leases_loop(), name="hub-leases"),
        ]
        for task in self._loops:
            task.add_done_callback(self._loop_done)

    def _loop_done(self, task: asyncio.Task[None]) -> None:
        # A loop ends only on stop; anything else must not go unnoticed.
        if not task.cancelled() and task.exception() is not None:
            log.error("hub loop %s died", task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        # The flag as well as the cancels below: a cancellation swallowed inside a Redis
        # call must not keep a loop (and the worker's shutdown) going.
        self._stopping = True
        leases: list[tuple[str, str]] = []
        for room in list(self.rooms.values()):
            for conn in list(room.members):
                if conn.lease is not None:
                    leases.append(conn.lease)
                    conn.lease = None
                conn.close(1001, "server shutting down")
        if leases:
            # Now rather than from connection_lost: the tasks it spawns die with the hub.
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key, member in leases:
                        pipe.zrem(key, member)
                    await pipe.execute()
            except Exception:
                log.warning("could not release %d connection leases; they lapse", len(leases))
        for task in self._loops:
            task.cancel()
        if self._loops:
            await asyncio.wait(self._loops, timeout=STOP_TIMEOUT_S)
        for sid in list(self.rooms):
            try:
                await self._report_viewers(sid, 0)
            except Exception:
                log.warning("could not clear viewer count of %s", sid, extra={"stream": sid})
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
            except HubError as exc:
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
            if not ended and not await self._take_lease(conn, viewer):
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
            self._release_lease(conn)
            raise
        finally:
            room.joining -= 1

    async def _take_lease(self, conn: HubProtocol, viewer: Viewer | None) -> bool:
        """A place among the viewer's sockets to this stream, or a 429 and False.

        Only viewer tokens are counted: anonymous sockets carry no identity (and cannot
        like, comment or buy), and a host may watch its own stream from many screens."""
        cap = self.settings.max_connections_per_viewer
        if viewer is None or viewer.role != "viewer" or cap <= 0:
            return True
        key = keys.viewer_connections(conn.sid, viewer.id)
        self._next_conn += 1
        member = f"{self.process_id}:{self._next_conn}"
        lease_ms = int(self.settings.connection_lease_s * 1000)
        if not int(await self._conn_admit(keys=[key], args=[member, lease_ms, cap])):
            conn.reject(
                429,
                f"too many connections: a viewer may hold {cap} sockets to one stream\n",
            )
            return False
        conn.lease = (key, member)
        if conn.closing or conn.transport.is_closing():
            # The client left while we asked Redis; connection_lost has been and gone.
            self._release_lease(conn)
            return False
        return True

    def _release_lease(self, conn: HubProtocol) -> None:
        lease, conn.lease = conn.lease, None
        if lease is not None:
            self.spawn(self._zrem(*lease))

    async def _zrem(self, key: str, member: str) -> None:
        try:
            await self.redis.zrem(key, member)
        except Exception:
            log.warning("could not release a connection lease of %s; it lapses", key)

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
        self._release_lease(conn)

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
                              extra=_context(conn))
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

    # --- viewer requests -------------------------------------------------------------

    def on_request(self, conn: HubProtocol, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "ping":
            if not conn.pings.take():
                raise HubError("rate_limited", "too many pings; slow down")
            conn.send(personal("pong", {}, conn.binary))
        elif kind == "like":
            self._like(conn)
        elif kind == "comment":
            text = msg.get("text")
            if not isinstance(text, str) or not text.strip():
                raise HubError("invalid_message", "comment needs a non-empty string text")
            text = text.strip()
            if len(text) > self.settings.max_comment_chars:
                raise HubError(
                    "comment_too_long",
                    f"a comment has at most {self.settings.max_comment_chars} characters",
                )
            self._request(conn, self._post_comment(conn, text))
        elif kind == "buy":
            self._viewer(conn)
            self._request(conn, self._buy(conn, msg))
        elif kind == "resume":
            after = msg.get("after")
            if not isinstance(after, int) or isinstance(after, bool) or not (
                0 <= after < MAX_RESUME_SEQ
            ):
                raise HubError("invalid_message", "resume needs an integer after >= 0")
            # Each resume may re-send the whole history: bounded per socket.
            if not conn.resumes.take():
                raise HubError("rate_limited", "too many resume requests; slow down")
            if conn.room is not None:
                conn.room.demote(conn)  # brings conn.after up to date
            if after < conn.after:
                conn.after = after
                conn.start_catch_up()
        elif self.backend.handles(kind):
            self._viewer(conn)
            self._request(conn, self._backend_request(conn, kind, msg))
        else:
            raise HubError("unknown_type", f"unknown message type {kind[:40]!r}")

    def _viewer(self, conn: HubProtocol) -> Any:
        viewer = conn.viewer
        if viewer is None:
            raise HubError("unauthorized", "connect with ?token= of a viewer to do this")
        if viewer.role != "viewer":
            raise HubError("forbidden", "this needs a viewer token")
        return viewer

    def _request(self, conn: HubProtocol, coro: Coroutine[Any, Any, None]) -> None:
        if conn.inflight >= MAX_INFLIGHT:
            coro.close()
            raise HubError("rate_limited", "too many requests at once")
        conn.inflight += 1

        async def run() -> None:
            try:
                await coro
            except HubError as exc:
                conn.send_error(exc.code, exc.detail)
            except Exception as exc:
                if redis_down(exc):
                    REDIS.failed("a websocket request", exc)
                    conn.send_error("unavailable", "Redis is unreachable; try again shortly")
                else:
                    log.exception("request on stream %s failed", conn.sid,
                                  extra=_context(conn))
                    conn.send_error("internal", "internal error")
            finally:
                conn.inflight -= 1

        self.spawn(run())

    def _like(self, conn: HubProtocol) -> None:
        viewer = self._viewer(conn)
        room = conn.room
        if room is None:
            return
        # Counted per viewer, not per socket: more sockets do not mean more likes.
        second = int(asyncio.get_running_loop().time())
        if room.like_second != second:
            room.like_second = second
            room.like_counts.clear()
        n = room.like_counts.get(viewer.id, 0) + 1
        room.like_counts[viewer.id] = n
        if n > self.settings.likes_per_second:
            raise HubError("rate_limited", "too many likes; slow down")
        room.likes += 1

    async def _post_comment(self, conn: HubProtocol, text: str) -> None:
        viewer = self._viewer(conn)
        sid = conn.sid
        comment_id = f"c_{secrets.token_hex(8)}"
        data = {
            "id": comment_id,
            "user": {"id": viewer.id, "name": viewer.name},
            "text": text,
        }
        s = self.settings
        result = int(
            await self._comment(
                keys=[
                    keys.seq(sid),
                    keys.history(sid),
                    keys.mutes(sid),
                    keys.banned_words(sid),
                    keys.comment_rate(sid, viewer.id),
                    keys.stats(sid),
                    keys.comment_ids(sid),
                    keys.deleted_comments(sid),
                ],
                args=[
                    keys.channel(sid), now_ms(), s.history_size, viewer.id, normalize(text),
                    orjson.dumps(data), s.comments_per_window, int(s.comment_window_s * 1000),
                    comment_id,
                ],
            )
        )
        if result == -1:
            raise HubError("muted", "the host muted you in this stream")
        if result == -2:
            raise HubError("rate_limited", "too many comments; slow down")
        if result == -3:
            raise HubError("comment_rejected", "the comment contains a word banned here")

    async def _buy(self, conn: HubProtocol, msg: dict[str, Any]) -> None:
        viewer = self._viewer(conn)
        payload = {k: msg[k] for k in ("sku", "qty", "key", "sale_id") if k in msg}
        reservation = await self.backend.buy(conn.sid, viewer, payload)
        conn.send(personal("reservation", reservation, conn.binary))

    async def _backend_request(self, conn: HubProtocol, kind: str, msg: dict[str, Any]) -> None:
        reply_type, data = await self.backend.request(conn.sid, self._viewer(conn), kind, msg)
        conn.send(personal(reply_type, data, conn.binary))

    # --- periodic work ---------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        s = self.settings
        period = min(s.ping_interval_s, s.ping_timeout_s, s.stall_timeout_s) / 2
        loop = asyncio.get_running_loop()
        while not self._stopping:
            await asyncio.sleep(period)
            now = loop.time()
            for room in list(self.rooms.values()):
                for conn in list(room.members):
                    if conn.paused:
                        continue  # a backed-up socket is the stall check's business
                    if conn.pong_due:
                        if now > conn.pong_due:
                            log.info("viewer of %s missed its pong; dropping", room.sid,
                                     extra=_context(conn))
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
                                 extra=_context(conn))
                        conn.close(1008, "too slow")

    async def _likes_loop(self) -> None:
        interval = self.settings.likes_interval_ms / 1000
        while not self._stopping:
            await asyncio.sleep(interval)
            for sid, room in list(self.rooms.items()):
                if room.likes or sid in self._likes_retry:
                    taps, room.likes = room.likes, 0
                    try:
                        wait = await self._send_likes(sid, taps)
                    except Exception as exc:
                        self._loop_failed("likes", exc)
                        room.likes += taps
                        continue
                    self._loop_failures["likes"].succeeded()
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
        while not self._stopping:
            await asyncio.sleep(interval)
            for sid, room in list(self.rooms.items()):
                try:
                    await self._report_viewers(sid, len(room.members))
                    await self._drop_room_if_empty(sid)
                except Exception as exc:
                    self._loop_failed("viewers", exc)
                else:
                    self._loop_failures["viewers"].succeeded()

    async def _leases_loop(self) -> None:
        """Renew the leases of this process's open sockets well before they lapse."""
        while not self._stopping:
            await asyncio.sleep(self.settings.connection_lease_s / 3)
            lease_ms = int(self.settings.connection_lease_s * 1000)
            for room in list(self.rooms.values()):
                held = [c.lease for c in room.members if c.lease is not None]
                for i in range(0, len(held), LEASE_BATCH):
                    batch = held[i:i + LEASE_BATCH]
                    try:
                        await self._conn_renew(
                            keys=[key for key, _ in batch],
                            args=[lease_ms, *(member for _, member in batch)],
                        )
                    except Exception as exc:
                        self._loop_failed("leases", exc)
                    else:
                        self._loop_failures["leases"].succeeded()

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



def _context(conn: HubProtocol) -> dict[str, str]:
    """Context fields of a log line about one viewer's socket."""
    context = {"stream": conn.sid}
    if conn.viewer is not None:
        context["viewer"] = conn.viewer.id
    return context
