"""Helpers of the tests/test_limits_*.py files: raw sockets, raw websocket frames and the
service log's tracebacks."""

from __future__ import annotations

import base64
import os
import select
import socket
import time
from collections.abc import Generator

from conftest import ServiceProcess
from websockets.frames import Close, Frame, Opcode
from websockets.streams import StreamReader


def raw_connect(svc: ServiceProcess, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", svc.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection or goes quiet."""
    sock.settimeout(timeout)
    out = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        if len(body) >= int(line.split(b":")[1]):
                            return out
    except TimeoutError:
        return out
    except ConnectionResetError:
        return out


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection (EOF or reset), None if it did not
    within `seconds`. Anything received meanwhile is discarded."""
    start = time.monotonic()
    deadline = start + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([sock], [], [], left)
        if ready:
            try:
                if not sock.recv(65536):
                    return time.monotonic() - start
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - start


def tracebacks(svc: ServiceProcess) -> list[str]:
    log = svc.log()
    return [part[:2000] for part in log.split("Traceback (most recent call last)")[1:]]


# --- websocket over a raw socket -----------------------------------------------------


class RawWs:
    """A websocket client that writes whatever frames a test asks for, and parses the
    server's frames with the websockets sans-I/O frame parser."""

    def __init__(self, svc: ServiceProcess, path: str, protocol: str = "live.json") -> None:
        self.sock = raw_connect(svc)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{svc.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
            ).encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            assert chunk, f"closed during the handshake: {buf!r}"
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.reader = StreamReader()
        self.reader.feed_data(rest)
        self.parser: Generator[None, None, Frame] | None = None

    def send(self, opcode: Opcode, data: bytes, fin: bool = True) -> None:
        self.sock.sendall(Frame(opcode, data, fin).serialize(mask=True))

    def send_close(self, code: int = 1000) -> None:
        self.send(Opcode.CLOSE, Close(code, "").serialize())

    def recv(self, timeout: float = 10.0) -> Frame | None:
        """The next frame, or None once the server closed the TCP connection."""
        deadline = time.monotonic() + timeout
        while True:
            if self.parser is None:
                self.parser = Frame.parse(self.reader.read_exact, mask=False, max_size=1 << 24)
            try:
                next(self.parser)
            except StopIteration as done:
                self.parser = None
                return done.value  # type: ignore[no-any-return]
            except EOFError:
                return None
            left = deadline - time.monotonic()
            assert left > 0, "no frame in time"
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                raise AssertionError("no frame in time") from None
            if chunk:
                self.reader.feed_data(chunk)
            else:
                self.reader.feed_eof()

    def recv_data(self, timeout: float = 10.0) -> Frame:
        """The next text or binary frame (pings and pongs skipped)."""
        while True:
            frame = self.recv(timeout)
            assert frame is not None, "closed"
            if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE):
                return frame

    def close(self) -> None:
        self.sock.close()
