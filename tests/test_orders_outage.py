"""Backpressure: with the order store unreachable (PostgreSQL behind a proxy we cut) or
locked (SQLite held by another writer), events wait in Redis, the lag shows them, and
everything drains, exactly once, when the database is back."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time

import pytest
from helpers.orders import (
    add_stream,
    emit_status,
    new_rid,
    new_sid,
    settings_for,
    sql_orders,
    waiting,
)
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from orders.db import make_engine
from orders.drain import Drainer
from orders.lag import lag
from orders.models import OrderRow

# The database cut off and brought back: seconds of waiting by design.
pytestmark = pytest.mark.slow


class TcpProxy:
    """A loopback TCP proxy we can cut (every connection dropped, new ones refused)
    and restore on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers.difference_update((writer, up_writer))


async def test_events_wait_in_redis_while_the_database_is_away(
    redis: Redis, database_url: str, orders_engine: AsyncEngine
) -> None:
    sid = new_sid()
    await add_stream(redis, sid)
    url = make_url(database_url)
    proxy: TcpProxy | None = None
    lock: sqlite3.Connection | None = None
    if url.get_backend_name() == "postgresql":
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        await proxy.start()
        url = url.set(host="127.0.0.1", port=proxy.port)
    engine = make_engine(url.render_as_string(hide_password=False))
    settings = settings_for([sid], batch_size=100, retry_max_ms=200)
    drainer = Drainer(redis, engine, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(drainer.run(stop))
    expected: dict[str, str] = {}

    async def emit(n: int) -> None:
        for i in range(n):
            rid = new_rid(sid)
            await emit_status(redis, sid, rid, "reserved")
            if i % 2:
                await emit_status(redis, sid, rid, "paid")
            expected[rid] = "paid" if i % 2 else "reserved"

    async def drained(timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while await waiting(redis, settings.group, [sid]):
            assert time.monotonic() < deadline, "not drained"
            await asyncio.sleep(0.05)

    try:
        await emit(100)
        await drained(20)
        assert len(await sql_orders(orders_engine, sid)) == 100

        # The database goes away.
        if proxy is not None:
            await proxy.cut()
        else:
            lock = sqlite3.connect(url.database or "", timeout=5, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
        failures_before = drainer.stats.failures
        await emit(400)
        await asyncio.sleep(1.0)
        backlog = await lag(redis, settings.group)
        mine = await waiting(redis, settings.group, [sid])
        assert mine >= 600, "events should be waiting in Redis"
        assert backlog["lag"] + backlog["pending"] >= mine
        if proxy is not None:
            assert drainer.stats.failures > failures_before
        else:
            lock.execute("SELECT count(*) FROM orders")  # the lock holder still reads
        assert not task.done()

        # It comes back: everything drains, nothing twice.
        if proxy is not None:
            await proxy.start()
        else:
            lock.execute("COMMIT")
            lock.close()
            lock = None
        await drained(60)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        if lock is not None:
            lock.close()
        await engine.dispose()
    got = await sql_orders(orders_engine, sid)
    idx = OrderRow.__table__.c.keys().index("status")
    status = {rid: row[idx] for rid, row in got.items()}
    assert status == expected
