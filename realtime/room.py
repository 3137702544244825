"""One stream's viewers in this process, and the ordered delivery of its messages.

Broadcast messages arrive from Redis pub/sub in `seq` order. Viewers that are caught up
and writable sit in `json_out` / `pack_out` (connection -> its transport's `write`), and a
message goes to them as one plain loop of `write(same_bytes)`. Viewers that are still
catching up (just joined, resuming, filling a gap) or whose socket is paused (a slow
consumer) are handled one by one, off the hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from realtime.messages import Message
from telemetry.metrics import (
    WS_BROADCASTS,
    WS_CONNECTIONS,
    WS_MESSAGES_DROPPED,
    WS_MESSAGES_SENT,
)

if TYPE_CHECKING:
    from realtime.hub import Hub
    from realtime.server import HubProtocol

log = logging.getLogger("live.realtime")

Write = Callable[[bytes], object]


class Room:
    def __init__(self, hub: Hub, sid: str) -> None:
        self.hub = hub
        self.sid = sid
        self.json_out: dict[HubProtocol, Write] = {}
        self.pack_out: dict[HubProtocol, Write] = {}
        self.catching: set[HubProtocol] = set()
        self.paused: set[HubProtocol] = set()
        self.members: set[HubProtocol] = set()
        # Viewer id -> its sockets here, for per-viewer messages (realtime/personal.py).
        # A tuple, not a set: usually one socket (at most the per-viewer cap), and a
        # one-item tuple costs a quarter of an empty set on every idle token viewer.
        self.by_viewer: dict[str, tuple[HubProtocol, ...]] = {}
        self.joining = 0
        self.last: int | None = None  # seq of the last message delivered here
        self.filling = False
        self.backlog: list[Message] = []
        self.delivering = False
        self.pause_later: list[HubProtocol] = []
        self.likes = 0  # taps not yet sent to Redis
        # Likes per viewer id in the current second (all of its sockets here).
        self.like_second = 0
        self.like_counts: dict[str, int] = {}
        self.ended = False

    # --- membership ------------------------------------------------------------------

    def add(self, conn: HubProtocol) -> None:
        """A viewer that has had its `hello` at `conn.after`; it catches up from there."""
        if conn not in self.members:
            WS_CONNECTIONS.inc()
        self.members.add(conn)
        self.catching.add(conn)
        if conn.viewer is not None:
            mine = self.by_viewer.get(conn.viewer.id, ())
            if conn not in mine:
                self.by_viewer[conn.viewer.id] = (*mine, conn)
        if self.last is not None and self.last > conn.after:
            conn.start_catch_up()
        elif self.last is not None and self.last == conn.after:
            self.promote(conn)

    def remove(self, conn: HubProtocol) -> None:
        # Called again from connection_lost after a close: count the socket once.
        if conn in self.members:
            self.members.discard(conn)
            WS_CONNECTIONS.dec()
        if conn.viewer is not None:
            mine = self.by_viewer.get(conn.viewer.id)
            if mine is not None and conn in mine:
                rest = tuple(c for c in mine if c is not conn)
                if rest:
                    self.by_viewer[conn.viewer.id] = rest
                else:
                    del self.by_viewer[conn.viewer.id]
        self.json_out.pop(conn, None)
        self.pack_out.pop(conn, None)
        self.catching.discard(conn)
        self.paused.discard(conn)

    def promote(self, conn: HubProtocol) -> None:
        """Caught up: from now on the conn gets the same bytes as everyone."""
        self.catching.discard(conn)
        if conn.paused:
            self.paused.add(conn)
        else:
            (self.pack_out if conn.binary else self.json_out)[conn] = conn.transport.write

    def demote(self, conn: HubProtocol) -> None:
        """Back to one-by-one delivery (resume request, or a gap of its own)."""
        self._leave_out(conn)
        self.paused.discard(conn)
        self.catching.add(conn)

    def _leave_out(self, conn: HubProtocol) -> bool:
        # The hot loop does not track `after` per viewer: a ready viewer has had `last`.
        if self.json_out.pop(conn, None) is None and self.pack_out.pop(conn, None) is None:
            return False
        if self.last is not None:
            conn.after = self.last
        return True

    def pause(self, conn: HubProtocol) -> None:
        if self.delivering:
            # Called from inside transport.write() in the loop below: move it after.
            self.pause_later.append(conn)
            return
        if self._leave_out(conn):
            self.paused.add(conn)

    def resume(self, conn: HubProtocol) -> None:
        if conn in self.paused:
            self.paused.discard(conn)
            if self.last is not None and conn.after == self.last:
                (self.pack_out if conn.binary else self.json_out)[conn] = conn.transport.write
            else:
                self.catching.add(conn)
                conn.start_catch_up()

    # --- delivery --------------------------------------------------------------------

    def deliver(self, msg: Message) -> None:
        if self.filling:
            self.backlog.append(msg)
            return
        last = self.last
        if last is not None:
            if msg.seq <= last:
                return  # already delivered (a fill and pub/sub overlapped)
            if msg.seq > last + 1:
                log.warning("stream %s: seq gap %d..%d, filling from history",
                            self.sid, last + 1, msg.seq - 1, extra={"stream": self.sid})
                self.backlog.append(msg)
                self.resync()
                return
        self._emit(msg)

    def _emit(self, msg: Message) -> None:
        self.last = msg.seq
        self.delivering = True
        try:
            if self.json_out:
                frame = msg.json_frame()
                for write in self.json_out.values():
                    write(frame)
            if self.pack_out:
                frame = msg.pack_frame()
                for write in self.pack_out.values():
                    write(frame)
        finally:
            self.delivering = False
        # One count per broadcast, not per socket write: the loops above stay bare.
        WS_BROADCASTS.inc()
        WS_MESSAGES_SENT.inc(len(self.json_out) + len(self.pack_out))
        if self.pause_later:
            moving, self.pause_later = self.pause_later, []
            for conn in moving:
                self.pause(conn)
        if self.paused:
            if msg.slot_key() is None:
                WS_MESSAGES_DROPPED.inc(len(self.paused))
            for conn in self.paused:
                conn.keep(msg)
        if self.catching:
            for conn in list(self.catching):
                conn.offer(msg)
        if msg.type == "stream.ended":
            self.ended = True
            for conn in list(self.members):
                conn.close(1000, "stream ended")

    def resync(self) -> None:
        """Fetch from the history whatever came after `last` (a gap, a reconnect)."""
        if self.filling or self.last is None:
            return
        self.filling = True
        self.hub.spawn(self._fill())

    async def _fill(self) -> None:
        entries: list[Message] = []
        try:
            assert self.last is not None
            entries = await self.hub.history(self.sid, self.last + 1)
        except Exception:
            log.exception("stream %s: history read failed", self.sid, extra={"stream": self.sid})
        backlog, self.backlog = self.backlog, []
        self.filling = False
        for msg in sorted([*entries, *backlog], key=lambda m: m.seq):
            if self.last is None or msg.seq > self.last:
                self._emit(msg)  # a gap the history no longer holds is accepted here
