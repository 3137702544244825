"""A viewer's websocket, on `websocket-client` (gevent-friendly under Locust's monkey-patching).

Every delivered message is reported to Locust's statistics as request type `WS`, name
`deliver <type>`, with the delivery latency (now - the server's `ts`) as response time, so
the web UI and the CSV show it beside the HTTP calls. Connect time is `WS connect`.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from typing import Any

import gevent
import orjson
import websocket
from locust.env import Environment

from loadtest import shared

WS = "WS"
# Seqs of one viewer held as "missing, may still come"; past this, a gap counts as lost.
MAX_TRACKED_MISSING = 10_000
Handler = Callable[[dict[str, Any]], None]


def ws_url(http_url: str, sid: str, token: str) -> str:
    base = "ws" + http_url.removeprefix("http")  # http→ws, https→wss
    return f"{base}/ws/streams/{sid}?token={token}"


class LiveSocket:
    """One websocket of one viewer, with a greenlet reading everything the server sends."""

    def __init__(
        self, env: Environment, url: str, on_message: Handler, sample: float = 1.0
    ) -> None:
        self.env = env
        self.url = url
        self.on_message = on_message
        self.sample = sample
        self.ws: websocket.WebSocket | None = None
        self.reader: gevent.Greenlet | None = None
        self.closing = False
        self.ended = False  # the stream ended: do not reconnect
        self.last_seq: int | None = None
        self.lost = 0  # broadcast seqs never received: untracked_lost + len(missing)
        self.missing: set[int] = set()
        self.untracked_lost = 0
        self.received = 0
        self.resuming = False
        self.key = id(self)

    @property
    def connected(self) -> bool:
        return self.ws is not None and self.ws.connected

    def fire(self, name: str, ms: float, length: int = 0, exc: Exception | None = None) -> None:
        self.env.events.request.fire(
            request_type=WS,
            name=name,
            response_time=ms,
            response_length=length,
            exception=exc,
            context={},
        )

    def connect(self, timeout_s: float = 30.0) -> bool:
        t0 = time.perf_counter()
        try:
            ws = websocket.create_connection(
                self.url,
                timeout=timeout_s,
                subprotocols=["live.json"],
                enable_multithread=True,
                skip_utf8_validation=True,
            )
        except Exception as exc:  # refused, timeout, handshake status ≠ 101
            self.fire("connect", (time.perf_counter() - t0) * 1000, exc=exc)
            return False
        ws.settimeout(None)  # the reader blocks until a message or the close
        self.fire("connect", (time.perf_counter() - t0) * 1000)
        self.resuming = self.last_seq is not None
        self.ws = ws
        self.reader = gevent.spawn(self._read, ws)
        if self.resuming:
            self.send({"type": "resume", "after": self.last_seq})
        return True

    def send(self, msg: dict[str, Any]) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            ws.send(orjson.dumps(msg).decode())
            return True
        except Exception:
            return False  # the reader sees the close and reports it

    def close(self) -> None:
        self.closing = True
        ws, self.ws = self.ws, None
        if ws is not None:
            try:
                ws.close(timeout=1)
            except Exception:
                pass
        if self.reader is not None:
            self.reader.kill(block=False)
        shared.viewer_done(self.env, self.key)

    def _read(self, ws: websocket.WebSocket) -> None:
        code: int | None = None
        error: Exception | None = None
        try:
            while True:
                opcode, payload = ws.recv_data()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    break
                if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    self._deliver(payload)
        except Exception as exc:  # connection reset, closed under us
            error = exc
        if self.ws is ws:
            self.ws = None
        if self.closing:
            return
        if code == 1000 and self.ended:
            return  # the host ended the stream: a normal goodbye
        shared.shared(self.env).tally.disconnects += 1
        self.fire(
            "disconnect",
            0,
            exc=ConnectionError(
                f"closed by server with {code}" if code else f"connection lost: {error!r}"
            ),
        )

    def _deliver(self, payload: bytes) -> None:
        now = time.time() * 1000
        msg = orjson.loads(payload)
        self.received += 1
        state = shared.shared(self.env)
        state.tally.messages += 1
        type_ = msg.get("type", "?")
        ts = msg.get("ts")
        if ts and (self.sample >= 1 or random.random() < self.sample):
            self.fire(f"deliver {type_}", max(0.0, now - ts), len(payload))
        self._track_seq(type_, msg)
        if type_ == "stream.ended":
            self.ended = True
        self.on_message(msg)

    def _track_seq(self, type_: str, msg: dict[str, Any]) -> None:
        seq = msg.get("seq")
        if type_ == "hello":
            data = msg.get("data") or {}
            if data.get("recovered") is False:
                shared.shared(self.env).tally.not_recovered += 1
            else:
                shared.shared(self.env).tally.viewers += self.last_seq is None
            last = data.get("seq", data.get("last_seq", seq))
            # After a reconnect the resumed messages fill the gap: keep counting from
            # the old seq unless the server says it could not recover them.
            keep = self.resuming and data.get("recovered") is not False
            self.resuming = False
            if data.get("recovered") is False and isinstance(last, int):
                # The history no longer holds what this viewer missed: lost for good.
                self.untracked_lost += max(0, last - (self.last_seq or 0))
                self._report_loss()
            if isinstance(last, int) and not keep:
                self.last_seq = last
            return
        if not isinstance(seq, int):
            return  # per-viewer messages carry no seq
        if self.last_seq is not None and seq > self.last_seq + 1:
            # Missing for now: right after a reconnect, live messages can overtake the
            # replay that the resume asked for, and the replay then fills the hole.
            gap = range(self.last_seq + 1, seq)
            room = max(0, MAX_TRACKED_MISSING - len(self.missing))
            self.missing.update(gap[:room])
            self.untracked_lost += max(0, len(gap) - room)
            self._report_loss()
        elif seq in self.missing:
            self.missing.discard(seq)
            self._report_loss()
        if self.last_seq is None or seq > self.last_seq:
            self.last_seq = seq

    def _report_loss(self) -> None:
        self.lost = self.untracked_lost + len(self.missing)
        shared.viewer_loss(self.env, self.key, self.lost)
