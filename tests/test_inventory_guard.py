"""The freshness guard on a real redis-server restarted under it: after a restart no
stock changes until the stream has been rebuilt from SQL; while SQL cannot be read the
stream refuses (StreamRecovering, HTTP 503 stream_recovering) instead of selling."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError
from redis_process import RedisProcess

from inventory import keys
from inventory.catalog import Catalog, Product
from inventory.guard import Guard, StreamRecovering
from inventory.reservations import Reservations
from live.recovery import StreamRecovery
from orders.db import create_schema, make_engine


async def test_no_change_after_a_restart_until_the_stream_is_rebuilt(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path / "redis", appendonly=True).start()
    redis = Redis.from_url(server.url, decode_responses=True)
    sql_down = make_engine("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere")
    sql = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'live.db'}")
    await create_schema(sql)
    try:
        sid = "s_" + "ab" * 8
        await Catalog(redis).add(Product(sid, "A", "Mug", 900, 10, None, int(time.time())))
        unguarded = Reservations(redis, 600, 0)
        r = await unguarded.reserve(sid, "v1", "A", 2, "k1")
        assert r.created

        server.kill()  # AOF with fsync always: same data, new server (new run_id)
        server.start()
        with contextlib.suppress(ConnectionError):
            await redis.ping()  # the pooled connection to the old server is dead
        with pytest.raises(StreamRecovering):
            await unguarded.reserve(sid, "v2", "A", 1, "k2")
        with pytest.raises(StreamRecovering):
            await unguarded.confirm(r.reservation["id"], "v1")
        failing = Reservations(redis, 600, 0, guard=Guard(StreamRecovery(redis, sql_down)))
        with pytest.raises(StreamRecovering):
            await failing.reserve(sid, "v2", "A", 1, "k2")
        assert await redis.hget(keys.stock(sid), "A") == "8"  # nothing moved

        working = Reservations(redis, 600, 0, guard=Guard(StreamRecovery(redis, sql)))
        assert (await working.reserve(sid, "v2", "A", 1, "k2")).created
        assert await redis.hget(keys.stock(sid), "A") == "7"
        # Checked now: the plain client works again, on this server.
        assert (await unguarded.confirm(r.reservation["id"], "v1")).reservation["status"] == "paid"
    finally:
        await redis.aclose()
        await sql.dispose()
        await sql_down.dispose()
        server.kill()
