"""A websocket audience cheap enough to leave the server its share of two cores.

`bench/fanout.py --lean` uses it instead of aiohttp clients. aiohttp costs the client
about as much per delivered message as the server spends sending it (a task wake-up, a
frame object and a JSON parse each), so on one 2-core box the load generator, not the
server, was the limit. Here a viewer is a bare asyncio.Protocol: the handshake is one
written request, and each frame is found in the received bytes and counted by a
substring test; only one viewer in `SAMPLE` parses the send timestamp for latency. It
answers pings (the server drops viewers that do not) and Close frames, nothing else.

Written by hand because it is the benchmark's instrument: a general client library does
exactly the per-message work we want to leave out.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from array import array
from multiprocessing.connection import Connection

SAMPLE = 10  # one viewer in SAMPLE records latencies
CONNECTS_AT_ONCE = 200


class LeanViewer(asyncio.Protocol):
    __slots__ = ("buf", "count", "done", "expected", "lat", "open", "transport", "wanted")

    def __init__(self, wanted: bytes, expected: int, lat: array | None,
                 done: list[int]) -> None:
        self.wanted = wanted
        self.expected = expected
        self.lat = lat
        self.done = done  # shared [viewers finished, messages counted]
        self.buf = b""
        self.open = False
        self.count = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if b" 101 " not in buf[:end]:
                assert self.transport is not None
                self.transport.close()
                return
            self.open = True
            buf = buf[end + 4:]
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 10
            end = pos + head + length
            if end > size:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 1 or opcode == 2:
                self._message(buf, pos + head, end)
            elif opcode == 9:  # ping: a pong with the same payload (zero mask)
                payload = buf[pos + head:end]
                self.transport.write(bytes((0x8A, 0x80 | len(payload), 0, 0, 0, 0)) + payload)
            elif opcode == 8:
                self.transport.write(b"\x88\x80\x00\x00\x00\x00")
                self.transport.close()
            pos = end
        self.buf = buf[pos:] if pos < size else b""

    def _message(self, buf: bytes, start: int, end: int) -> None:
        if buf.find(self.wanted, start, end) < 0:
            return
        if self.lat is not None:
            at = buf.find(b'"ts":', start, end)
            if at >= 0:
                self.lat.append(time.time() * 1000.0 - int(buf[at + 5:at + 18]))
        self.count += 1
        self.done[1] += 1
        if self.count == self.expected:
            self.done[0] += 1


def request(host: str, port: int, path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: live.json\r\n\r\n"
    ).encode()


def lean_viewer_process(host: str, port: int, path: str, n: int, wanted: str,
                        expected: int, ctl: Connection) -> None:
    """Open n viewers of `path`; report ("connected", k) once they are open, then on
    the driver's word ("result", messages counted, latencies as array('d') bytes)."""
    import resource

    import uvloop

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        lat = array("d")
        done = [0, 0]
        viewers: list[LeanViewer] = []
        gate = asyncio.Semaphore(CONNECTS_AT_ONCE)
        hello = request(host, port, path)
        failed = 0

        async def connect(i: int) -> None:
            nonlocal failed
            async with gate:
                try:
                    transport, viewer = await loop.create_connection(
                        lambda: LeanViewer(wanted.encode(), expected,
                                           lat if i % SAMPLE == 0 else None, done),
                        host, port,
                    )
                except OSError:
                    failed += 1
                    return
                transport.write(hello)
                viewers.append(viewer)
                # Wait for the 101 before the next connect takes this slot.
                for _ in range(600):
                    if viewer.open or transport.is_closing():
                        break
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(connect(i) for i in range(n)))
        ctl.send(("connected", sum(1 for v in viewers if v.open)))
        await loop.run_in_executor(None, ctl.recv)
        ctl.send(("result", done[1], lat.tobytes()))
        for v in viewers:
            if v.transport is not None:
                v.transport.abort()

    uvloop.run(main())
