"""`HubProtocol`: our own uvicorn websocket protocol for `/ws/streams/{id}`.

Why it exists: fan-out is the service's hottest path. Through ASGI every delivery would
be a coroutine hop and a frame built per viewer; here a broadcast is framed once per
subprotocol and the same bytes are written to each caught-up viewer's transport, which
keeps the service within about 1.3x the CPU per delivery of a bare pre-framed writer
(bench/RESULTS.md). It speaks websocket through the `websockets` sans-I/O
`ServerProtocol`; there is no task per connection: reads are callbacks, and one ticker per
process (in the hub) does heartbeats and slow-consumer checks.

The price is a dependency on uvicorn internals, not its public API: `live serve` sets
`ws` to this class's import string, and uvicorn's HTTP protocol builds it with
`config`, `server_state` and `app_state` on an Upgrade, calls `connection_made`, moves
the transport to it and feeds it the request re-serialized (`data_received`); the class
joins `server_state.connections` and gets `shutdown()` when uvicorn stops. That is why
pyproject.toml pins uvicorn to the minor versions this was tested with (0.54, 0.55);
check those hooks in uvicorn's `protocols/http/*_impl.py` and `server.py` before raising
the pin.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

from domain.errors import DomainError
from realtime.backend import Viewer
from realtime.budget import Budget
from realtime.messages import MSGPACK, SUBPROTOCOLS, Message, error_frame, parse_incoming
from realtime.wscore import ServerCore
from telemetry.metrics import WS_MESSAGES_DROPPED, WS_MESSAGES_SENT, WS_SLOW_CLOSES

if TYPE_CHECKING:
    from realtime.hub import Hub
    from realtime.room import Room

log = logging.getLogger("live.realtime")
# websockets logs every open and close at INFO; with thousands of viewers that is noise.
ws_log = logging.getLogger("live.realtime.ws")
ws_log.setLevel(logging.WARNING)

PATH = re.compile(r"^/ws/streams/([A-Za-z0-9_-]{1,64})$")
CLOSE_TIMEOUT_S = 3.0  # without a hub (tests); the hub's comes from LIVE_WS_CLOSE_TIMEOUT_S
# What a handshake request keeps once it has been answered (see `_handshake`).
_NO_HEADERS = Headers()


class HubProtocol(asyncio.Protocol):
    __slots__ = (
        "_resumes",
        "after",
        "binary",
        "closing",
        "connections",
        "filling",
        "frag",
        "frag_binary",
        "hub",
        "inflight",
        "lease",
        "next_ping",
        "paused",
        "paused_at",
        "pending",
        "pings",
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
        settings = self.hub.settings if self.hub else None
        max_size = settings.max_frame_bytes if settings else 64 * 1024
        self.pings = Budget(settings.pings_per_min if settings else 60)
        self._resumes: Budget | None = None
        # A fragmented message being reassembled (websockets' max_size caps the whole
        # message, fragments included, so this never holds more than 64 KiB).
        self.frag: list[bytes] | None = None
        self.frag_binary = False
        self.ws = ServerCore(
            self.pings,
            subprotocols=SUBPROTOCOLS,  # type: ignore[arg-type]  # shared, never mutated
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

    def log_context(self) -> dict[str, str]:
        """Context fields of a log line about this socket."""
        context = {"stream": self.sid}
        if self.viewer is not None:
            context["viewer"] = self.viewer.id
        return context

    @property
    def resumes(self) -> Budget:
        """Made on the first `resume`: most sockets never send one."""
        if self._resumes is None:
            self._resumes = Budget(self.hub.settings.resumes_per_min if self.hub else 10)
        return self._resumes

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
                self._frame(event)
        self._flush_ws()
        if ws.close_rcvd is not None:
            # The closing handshake is complete (whoever started it): the server closes
            # the TCP connection first (RFC 6455 7.1.1).
            self._finish()
        elif ws.parser_exc is not None:
            # Protocol error (e.g. a frame over max_size: 1009): websockets sent Close
            # and discards what follows; let the peer read our Close before we go.
            self._linger()

    def _frame(self, frame: Frame) -> None:
        op = frame.opcode
        if op is Opcode.TEXT or op is Opcode.BINARY:
            if frame.fin:
                self._message(bytes(frame.data), op is Opcode.BINARY)
            else:
                self.frag = [bytes(frame.data)]
                self.frag_binary = op is Opcode.BINARY
        elif op is Opcode.CONT and self.frag is not None:
            self.frag.append(bytes(frame.data))
            if frame.fin:
                parts, self.frag = self.frag, None
                self._message(b"".join(parts), self.frag_binary)

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
        if self.closing:
            return
        if droppable and self.paused:
            WS_MESSAGES_DROPPED.inc()
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
        if code == 1008:
            WS_SLOW_CLOSES.inc()
        if self.slot:
            for msg in sorted(self.slot.values(), key=lambda m: m.seq):
                self.transport.write(msg.frame(self.binary))
            self.slot = None
        if self.ws.state is State.OPEN:
            self.ws.send_close(code, reason)
            self._flush_ws()
            # The peer answers with its Close, and data_received closes TCP then.
            self._linger()
        else:
            self._finish()
        if self.room is not None:
            self.room.remove(self)

    def _linger(self) -> None:
        """We sent Close: wait (bounded) for the peer's Close or EOF before dropping the
        TCP connection, so that the peer reads our Close and reports a clean close."""
        if self.transport.is_closing():
            return
        timeout = self.hub.settings.close_timeout_s if self.hub else CLOSE_TIMEOUT_S
        asyncio.get_running_loop().call_later(timeout, self._drop)

    def _drop(self) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        # No Close from the peer in time. close() still flushes what is queued (a slow
        # reader gets its newest stock and our Close frame); a peer that does not read
        # at all is cut off after one more timeout.
        transport.close()
        if transport.get_write_buffer_size():
            timeout = self.hub.settings.close_timeout_s if self.hub else CLOSE_TIMEOUT_S
            asyncio.get_running_loop().call_later(timeout, transport.abort)

    def reject(self, status: int, text: str) -> None:
        if self.transport.is_closing():
            return
        self.ws.send_response(self.ws.reject(status, text))
        self._flush_ws()
        self.closing = True
        self.transport.close()

    # --- handshake -------------------------------------------------------------------

    def _handshake(self, request: Request) -> None:
        try:
            self._answer(request)
        finally:
            # websockets' ServerProtocol.parse (17.4) goes on parsing frames in the same
            # generator that parsed this request, so its frame would keep the request
            # for as long as the socket lives (~3 KiB with that generator).
            if not self.ws.drop_handshake_parser():
                request.headers = _NO_HEADERS  # kept after all: keep it small
                request.path = ""

    def _answer(self, request: Request) -> None:
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
        # One string per stream, not one per socket.
        self.sid = sys.intern(match.group(1))
        self.hub.spawn(self.hub.admit(self, response, token))

    def opened(self, response: Any) -> None:
        self.ws.send_response(response)
        self._flush_ws()
        loop = asyncio.get_running_loop()
        assert self.hub is not None
        self.next_ping = loop.time() + self.hub.settings.ping_interval_s

    # --- incoming messages -----------------------------------------------------------

    def _message(self, data: bytes, binary: bool) -> None:
        if not binary:
            try:
                data.decode()
            except UnicodeDecodeError:
                # RFC 6455 8.1: invalid UTF-8 in a text message fails the connection.
                self.closing = True
                self.ws.fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                self._flush_ws()
                self._linger()
                if self.room is not None:
                    self.room.remove(self)
                return
        if self.hub is None or self.room is None:
            return  # before `hello`: nothing to do with it yet
        try:
            msg = parse_incoming(bytes(data), binary)
            self.hub.on_request(self, msg)
        except DomainError as exc:
            self.send_error(exc.code, exc.detail)

    # --- broadcast delivery off the hot path -----------------------------------------

    def push(self, msg: Message) -> None:
        """Deliver one broadcast message to this viewer alone, in order."""
        if self.paused:
            if msg.slot_key() is None:
                WS_MESSAGES_DROPPED.inc()
            self.keep(msg)
        else:
            self.transport.write(msg.frame(self.binary))
            WS_MESSAGES_SENT.inc()  # one viewer catching up, off the hot path
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
