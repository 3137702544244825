"""What a viewer asks on its socket: ping, like, comment, buy, resume, and the requests
the backend answers (group buys, ...). Each is checked here; those that wait on Redis or
the backend run as tasks of the hub, a few at a time per socket."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import orjson
from redis.commands.core import AsyncScript

from domain.errors import DomainError
from outage import REDIS, redis_down
from realtime import keys
from realtime.backend import Backend, Viewer
from realtime.messages import now_ms, personal
from realtime.settings import HubSettings
from realtime.textnorm import normalize

if TYPE_CHECKING:
    from realtime.server import HubProtocol

log = logging.getLogger("live.realtime")

MAX_INFLIGHT = 4  # requests of one connection waiting on Redis or the buy handler
MAX_RESUME_SEQ = 2**53


class ViewerRequests:
    def __init__(
        self,
        settings: HubSettings,
        backend: Backend,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
        comment: AsyncScript,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.spawn = spawn
        self._comment = comment  # lua/comment.lua, bound to the hub's client

    def on_request(self, conn: HubProtocol, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "ping":
            if not conn.pings.take():
                raise DomainError("rate_limited", "too many pings; slow down")
            conn.send(personal("pong", {}, conn.binary))
        elif kind == "like":
            self._like(conn)
        elif kind == "comment":
            text = msg.get("text")
            if not isinstance(text, str) or not text.strip():
                raise DomainError("invalid_message", "comment needs a non-empty string text")
            text = text.strip()
            if len(text) > self.settings.max_comment_chars:
                raise DomainError(
                    "comment_too_long",
                    f"a comment has at most {self.settings.max_comment_chars} characters",
                )
            self._request(conn, self._post_comment(conn, text))
        elif kind == "buy":
            # Checked here, at once, so that a socket without a viewer token is answered
            # before anything is spawned; the coroutine gets the viewer as it is.
            self._request(conn, self._buy(conn, self._viewer(conn), msg))
        elif kind == "resume":
            after = msg.get("after")
            if not isinstance(after, int) or isinstance(after, bool) or not (
                0 <= after < MAX_RESUME_SEQ
            ):
                raise DomainError("invalid_message", "resume needs an integer after >= 0")
            # Each resume may re-send the whole history: bounded per socket.
            if not conn.resumes.take():
                raise DomainError("rate_limited", "too many resume requests; slow down")
            if conn.room is not None:
                conn.room.demote(conn)  # brings conn.after up to date
            if after < conn.after:
                conn.after = after
                conn.start_catch_up()
        elif self.backend.handles(kind):
            self._request(conn, self._backend_request(conn, self._viewer(conn), kind, msg))
        else:
            raise DomainError("unknown_type", f"unknown message type {kind[:40]!r}")

    def _viewer(self, conn: HubProtocol) -> Viewer:
        viewer = conn.viewer
        if viewer is None:
            raise DomainError("unauthorized", "connect with ?token= of a viewer to do this")
        if viewer.role != "viewer":
            raise DomainError("forbidden", "this needs a viewer token")
        return viewer

    def _request(self, conn: HubProtocol, coro: Coroutine[Any, Any, None]) -> None:
        if conn.inflight >= MAX_INFLIGHT:
            coro.close()
            raise DomainError("rate_limited", "too many requests at once")
        conn.inflight += 1

        async def run() -> None:
            try:
                await coro
            except DomainError as exc:
                conn.send_error(exc.code, exc.detail)
            except Exception as exc:
                if redis_down(exc):
                    REDIS.failed("a websocket request", exc)
                    conn.send_error("unavailable", "Redis is unreachable; try again shortly")
                else:
                    log.exception("request on stream %s failed", conn.sid,
                                  extra=conn.log_context())
                    conn.send_error("internal", "internal error")
            finally:
                conn.inflight -= 1

        self.spawn(run())

    def _like(self, conn: HubProtocol) -> None:
        viewer = self._viewer(conn)
        room = conn.room
        if room is None:
            return
        # Counted per viewer, not per socket: more sockets do not mean more likes. The
        # hub's likes loop (realtime/hub_loops.py) sends the room's taps to Redis.
        second = int(asyncio.get_running_loop().time())
        if room.like_second != second:
            room.like_second = second
            room.like_counts.clear()
        n = room.like_counts.get(viewer.id, 0) + 1
        room.like_counts[viewer.id] = n
        if n > self.settings.likes_per_second:
            raise DomainError("rate_limited", "too many likes; slow down")
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
            raise DomainError("muted", "the host muted you in this stream")
        if result == -2:
            raise DomainError("rate_limited", "too many comments; slow down")
        if result == -3:
            raise DomainError("comment_rejected", "the comment contains a word banned here")

    async def _buy(self, conn: HubProtocol, viewer: Viewer, msg: dict[str, Any]) -> None:
        payload = {k: msg[k] for k in ("sku", "qty", "key", "sale_id") if k in msg}
        reservation = await self.backend.buy(conn.sid, viewer, payload)
        conn.send(personal("reservation", reservation, conn.binary))

    async def _backend_request(
        self, conn: HubProtocol, viewer: Viewer, kind: str, msg: dict[str, Any]
    ) -> None:
        reply_type, data = await self.backend.request(conn.sid, viewer, kind, msg)
        conn.send(personal(reply_type, data, conn.binary))
