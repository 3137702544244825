"""uvicorn's httptools HTTP protocol with the limits it has no setting for.

uvicorn gives us the idle keep-alive timeout (`timeout_keep_alive`) and, for its h11
protocol only, a cap on the incomplete request head (`h11_max_incomplete_event_size`,
answered with a plain 400). `live serve` runs the faster httptools protocol, which has
neither a header-size cap nor any read timeout, so this subclass adds the smallest set
that closes those holes:

- the request head (request line + headers) is at most `LIVE_HTTP_MAX_HEADER_BYTES`,
  else 431 and the connection is closed. httptools buffers a header that is still
  arriving, so bytes of a head still incomplete after a read are counted as they come;
  a complete head is measured exactly.
- the head must arrive within `LIVE_HTTP_HEADER_TIMEOUT_S` of the connection opening or
  of the request's first byte, and the body within `LIVE_HTTP_BODY_TIMEOUT_S` of the end
  of the head; otherwise the connection is dropped (a slow client ties up a socket and
  a buffer, nothing else, and only for that long).

Everything else (parsing, keep-alive, pipelining, the websocket upgrade) is uvicorn's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from live.config import Settings

log = logging.getLogger("live.http")

_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"connection: close\r\n"
)


class HeadTooLarge(Exception):
    pass


_DEFAULTS = Settings()


def _limits(app_state: dict[str, Any]) -> tuple[int, float, float]:
    # The worker's settings, which its lifespan put in the state every connection gets
    # (uvicorn accepts none before the lifespan has started).
    services = app_state.get("services")
    s = _DEFAULTS if services is None else services.settings
    return s.http_max_header_bytes, s.http_header_timeout_s, s.http_body_timeout_s


def _response_431(limit: int) -> bytes:
    body = (
        b'{"error":"headers_too_large","detail":"request headers over '
        + str(limit).encode()
        + b' bytes"}'
    )
    return _431 + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head, self.head_timeout, self.body_timeout = _limits(self.app_state)
        self.in_head = False
        self.head_bytes = 0  # complete pieces of the head (url, header names and values)
        self.partial_bytes = 0  # bytes read while the head stayed incomplete
        self.too_large = False
        self.read_timer: asyncio.TimerHandle | None = None

    # --- timers ----------------------------------------------------------------------

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self.read_timer = self.loop.call_later(seconds, self._read_timeout, what)

    def _disarm(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def _read_timeout(self, what: str) -> None:
        self.read_timer = None
        if not self.transport.is_closing():
            log.debug("dropping a connection from %s: %s not read in time", self.client, what)
            self.transport.close()

    # --- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms no timer before the first request: a silent client would hold
        # the connection for ever.
        self._arm(self.head_timeout, "request head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        was_in_head = self.in_head
        super().data_received(data)
        if self.too_large or self.transport.is_closing():
            return
        if was_in_head and self.in_head:
            # The whole read was head and the head is still not complete.
            self.partial_bytes += len(data)
            if self.partial_bytes > self.max_head:
                self._reject_head()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # from now on the websocket protocol owns the connection
        super().handle_websocket_upgrade()

    def send_400_response(self, msg: str) -> None:
        if self.too_large:  # the parser stopped because we raised HeadTooLarge
            self._reject_head()
            return
        super().send_400_response(msg)

    def _reject_head(self) -> None:
        self.too_large = True
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_response_431(self.max_head))
            self.transport.close()

    # --- parser callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_bytes = self.partial_bytes = 0
        self._arm(self.head_timeout, "request head")

    def on_url(self, url: bytes) -> None:
        self.head_bytes += len(url)
        if self.head_bytes > self.max_head:
            self.too_large = True
            raise HeadTooLarge
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self.head_bytes > self.max_head:
            self.too_large = True
            raise HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._arm(self.body_timeout, "request body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
