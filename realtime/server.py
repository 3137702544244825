"""`HubProtocol`: our own uvicorn websocket protocol for `/ws/streams/{id}`.

uvicorn hands an Upgrade request to this class (`live serve` sets `ws` to its import
string). It speaks websocket through the `websockets` sans-I/O `ServerProtocol` and
writes to the transport itself, so a broadcast costs one `transport.write` per viewer
instead of an ASGI send. There is no task per connection: reads are callbacks, and one
ticker per process (in the hub) does heartbeats and slow-consumer checks.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from realtime.backend import HubError, Viewer
from realtime.messages import MSGPACK, SUBPROTOCOLS, Message, error_frame, parse_incoming

if TYPE_CHECKING:
    from realtime.hub import Hub
    from realtime.room import Room

log = logging.getLogger("live.realtime")
# websockets logs every open and close at INFO; with thousands of viewers that is noise.
ws_log = logging.getLogger("live.realtime.ws")
ws_log.setLevel(logging.WARNING)

PATH = re.compile(r"^/ws/streams/([A-Za-z0-9_-]{1,64})$")
CLOSE_TIMEOUT_S = 5.0


def _select_subprotocol(_: ServerProtocol, offered: Any) -> str | None:
    # The client's first supported choice; none (or only unknown ones) means live.json.
    for name in offered:
        if name in SUBPROTOCOLS:
            return str(name)
    return None


class HubProtocol(asyncio.Protocol):
    __slots__ = (
        "after",
        "binary",
        "closing",
        "connections",
        "filling",
        "hub",
        "inflight",
        "lease",
        "next_ping",
        "paused",
        "paused_at",
        "pending",
        "pong_due",
        "room",
        "sid",
        "slot",
        "transport",
        "viewer",
        "ws",
    )

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: Any = None) -> None:
        self.hub: Hub | None = app_state.get("hub")
        self.connections: set[Any] = server_state.connections
        max_size = self.hub.settings.max_frame_bytes if self.hub else 64 * 1024
        self.ws = ServerProtocol(
            subprotocols=list(SUBPROTOCOLS),
            select_subprotocol=_select_subprotocol,
            max_size=max_size,
            logger=ws_log,
        )
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.sid = ""
        self.room: Room | None = None
        self.viewer: Viewer | None = None
        self.binary = False
        self.after = 0  # seq of the last broadcast message this viewer has had
        self.filling = False
        self.pending: list[Message] = []
        self.paused = False
        self.paused_at = 0.0
        self.slot: dict[str, Message] | None = None
        self.closing = False
        self.inflight = 0
        # (key, member) of this socket's place among its viewer's sockets, while held.
        self.lease: tuple[str, str] | None = None
        self.next_ping = 0.0
        self.pong_due = 0.0

    def __hash__(self) -> int:
        return id(self)

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        if self.hub is not None:
            high = self.hub.settings.write_high_water
            self.transport.set_write_buffer_limits(high=high, low=high // 4)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.closing = True
        if self.hub is not None:
            self.hub.disconnected(self)

    def data_received(self, data: bytes) -> None:
        self.pong_due = 0.0  # any sign of life counts as an answer to our ping
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if isinstance(event, Request):
                self._handshake(event)
            elif isinstance(event, Frame) and not self.closing:
                op = event.opcode
                if op is Opcode.TEXT or op is Opcode.BINARY:
                    self._message(event)
        self._flush_ws()
        if ws.parser_exc is not None or ws.close_expected():
            # Protocol error (e.g. a frame over max_size: 1009) or a completed close.
            self._finish()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush_ws()
        self._finish()
        return None

    def pause_writing(self) -> None:
        self.paused = True
        self.paused_at = asyncio.get_running_loop().time()
        if self.room is not None:
            self.room.pause(self)

    def resume_writing(self) -> None:
        self.paused = False
        if self.slot:
            for msg in sorted(self.slot.values(), key=lambda m: m.seq):
                self.transport.write(msg.frame(self.binary))
            self.slot = None
        if self.room is not None:
            self.room.resume(self)

    def shutdown(self) -> None:
        """uvicorn is stopping: going away (1001)."""
        self.close(1001, "server shutting down")

    # --- writing ---------------------------------------------------------------------

    def _flush_ws(self) -> None:
        out = self.ws.data_to_send()
        for chunk in out:
            if chunk:
                self.transport.write(chunk)

    def _finish(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def send(self, frame: bytes, droppable: bool = False) -> None:
        """A per-viewer frame. A paused viewer loses the droppable ones."""
        if self.closing or (droppable and self.paused):
            return
        self.transport.write(frame)
        if self.transport.get_write_buffer_size() > self._hard_cap():
            self.close(1008, "too slow")

    def send_error(self, code: str, detail: str) -> None:
        self.send(error_frame(code, detail, self.binary), droppable=True)

    def _hard_cap(self) -> int:
        return self.hub.settings.write_hard_cap if self.hub else 1 << 20

    def close(self, code: int, reason: str = "") -> None:
        """Close frame after whatever is queued, then close (abort if it never drains)."""
        if self.closing:
            return
        self.closing = True
        if self.slot:
            for msg in sorted(self.slot.values(), key=lambda m: m.seq):
                self.transport.write(msg.frame(self.binary))
            self.slot = None
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
            self._flush_ws()
        transport = self.transport
        transport.close()
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, transport.abort)
        if self.room is not None:
            self.room.remove(self)

    def reject(self, status: int, text: str) -> None:
        if self.transport.is_closing():
            return
        self.ws.send_response(self.ws.reject(status, text))
        self._flush_ws()
        self.closing = True
        self.transport.close()

    # --- handshake -------------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        path, _, query = request.path.partition("?")
        match = PATH.match(path)
        if match is None:
            self.reject(404, "not found\n")
            return
        if self.hub is None:
            self.reject(503, "service not ready\n")
            return
        response = self.ws.accept(request)
        if response.status_code != 101:
            self.ws.send_response(response)
            self._flush_ws()
            self.closing = True
            self.transport.close()
            return
        self.binary = response.headers.get("Sec-WebSocket-Protocol") == MSGPACK
        token = (parse_qs(query).get("token") or [""])[0]
        self.sid = match.group(1)
        self.hub.spawn(self.hub.admit(self, response, token))

    def opened(self, response: Any) -> None:
        self.ws.send_response(response)
        self._flush_ws()
        loop = asyncio.get_running_loop()
        assert self.hub is not None
        self.next_ping = loop.time() + self.hub.settings.ping_interval_s

    # --- incoming messages -----------------------------------------------------------

    def _message(self, frame: Frame) -> None:
        if self.hub is None or self.room is None:
            return  # before `hello`: nothing to do with it yet
        try:
            msg = parse_incoming(bytes(frame.data), frame.opcode is Opcode.BINARY)
            self.hub.on_request(self, msg)
        except HubError as exc:
            self.send_error(exc.code, exc.detail)

    # --- broadcast delivery off the hot path -----------------------------------------

    def push(self, msg: Message) -> None:
        """Deliver one broadcast message to this viewer alone, in order."""
        if self.paused:
            self.keep(msg)
        else:
            self.transport.write(msg.frame(self.binary))
        self.after = msg.seq

    def keep(self, msg: Message) -> None:
        """Paused: lose what may be lost, keep the newest of the rest for later."""
        self.after = msg.seq
        key = msg.slot_key()
        if key is None:
            return
        if self.slot is None:
            self.slot = {}
        self.slot[key] = msg

    def offer(self, msg: Message) -> None:
        """A broadcast message while this viewer catches up."""
        if self.filling:
            if msg.seq > self.after:
                self.pending.append(msg)
            return
        if msg.seq == self.after + 1:
            self.push(msg)
        elif msg.seq > self.after + 1:
            self.pending.append(msg)
            self.start_catch_up()
            return
        room = self.room
        if room is not None and room.last is not None and self.after >= room.last:
            room.promote(self)

    def start_catch_up(self) -> None:
        if self.filling or self.hub is None:
            return
        self.filling = True
        self.hub.spawn(self.hub.catch_up(self))
