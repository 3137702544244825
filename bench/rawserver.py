"""The raw anchor of the fan-out benchmarks: a bare websocket writer.

It accepts websocket upgrades (the `websockets` sans-I/O handshake) and, on each command
from its pipe, writes one pre-framed bytes object to every transport: the least any
server in Python can do per delivery. `bench/fanout.py`, `bench/audience.py` and
`bench/idle.py` measure the service against it in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import secrets
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

import orjson

PAD = "x" * 40  # brings the service's host.message envelope to ~110 bytes


def message(i: int) -> bytes:
    """Host message `i` in the same envelope shape and size as the service's."""
    return orjson.dumps({"type": "bench", "seq": i + 1, "ts": time.time() * 1000.0,
                         "data": {"text": f"m{i:06d} {PAD}", "id": "m_0123456789"}})


def baseline_server(port: int, ctl: Connection) -> None:
    """Accept websocket upgrades; on each pipe command write one pre-framed object to all."""
    import uvloop
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Request
    from websockets.server import ServerProtocol

    transports: set[asyncio.Transport] = set()

    class Raw(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t: asyncio.Transport = transport  # type: ignore[assignment]
            self.ws: ServerProtocol | None = ServerProtocol(max_size=65536)

        def data_received(self, data: bytes) -> None:
            ws = self.ws
            if ws is None:  # after the handshake incoming frames are ignored
                return
            ws.receive_data(data)
            for event in ws.events_received():
                if isinstance(event, Request):
                    ws.send_response(ws.accept(event))
                    for chunk in ws.data_to_send():
                        self.t.write(chunk)
                    transports.add(self.t)
                    self.ws = None  # the raw path keeps no per-connection protocol state
                    return

        def connection_lost(self, exc: Exception | None) -> None:
            transports.discard(self.t)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Raw, "127.0.0.1", port, backlog=4096)
        done = loop.create_future()

        def command() -> None:
            msg = ctl.recv()
            if msg is None:
                done.set_result(None)
                return
            if msg == "count":
                ctl.send(len(transports))
                return
            frame = Frame(Opcode.TEXT, msg).serialize(mask=False)
            for t in transports:
                t.write(frame)

        loop.add_reader(ctl.fileno(), command)
        ctl.send("ready")
        await done
        server.close()

    uvloop.run(main())


def _serve(port: int, ctl: Connection, own_session: bool) -> None:
    if own_session:  # apart from the driver, as a daemon runs in production
        os.setsid()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    baseline_server(port, ctl)


@contextlib.contextmanager
def raw_server(own_session: bool = False) -> Iterator[tuple[int, int, Callable[[int], None]]]:
    """A running raw server: (port, pid, publish(i)), stopped on exit."""
    port = 25000 + secrets.randbelow(5000)
    ctx = mp.get_context("spawn")
    a, b = ctx.Pipe()
    p = ctx.Process(target=_serve, args=(port, b, own_session), daemon=True)
    p.start()
    if not a.poll(30) or a.recv() != "ready":
        raise SystemExit("raw server did not start")
    assert p.pid is not None
    try:
        yield port, p.pid, lambda i: a.send(message(i))
    finally:
        a.send(None)
        p.join(5)
        if p.is_alive():
            p.kill()
