"""Retiring ended streams from Redis (orders/retention.py) against real Redis and SQL:
an ended stream leaves Redis only once it is drained and past its retention (and nothing
brings it back), the deployment-wide pass finds streams ended before retention existed,
and a retired stream is then served from SQL while others keep draining. Windows are
short here, set per drainer or by env; the machine's Redis is shared, so every drainer
is sharded to this test's own streams."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers.api import HostedStream, bearer, new_stream, new_viewer
from helpers.orders import (
    groups_of,
    ids_of,
    keys_without_ttl,
    out_of_the_way,
    reconcile,
    settings_for,
    sql_orders,
    waiting,
)
from helpers.services import service_env
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from inventory.reservations import Reservations
from inventory.sales import Sales
from inventory.streams import ENDED_STREAMS, StreamStore, meta_key
from inventory.sweeper import Sweeper
from live.config import Settings
from orders.drain import Drainer
from orders.retention import Retention

HOUR_MS = 3600 * 1000


async def test_ended_stream_is_kept_until_drained_then_retired(
    redis: Redis, orders_engine: AsyncEngine
) -> None:
    streams = StreamStore(redis)
    stream = await streams.create("kept", "Ann")
    sid, key = stream.id, inv_keys.events(stream.id)
    # Out of the shared registry at once, so that no other test's unsharded drainer adds
    # a group of its own (see above); the sharded drainer here needs no registry.
    await redis.srem(inv_keys.STREAMS, sid)
    await redis.hset(inv_keys.products(sid), "mug", "{}")
    assert await streams.end(sid) is not None
    assert await redis.zscore(ENDED_STREAMS, sid) is not None
    # A lagging group: one entry pending, the end event never delivered.
    lagging = f"lagging_{secrets.token_hex(4)}"
    await redis.xgroup_create(key, lagging, id="0")
    await redis.xreadgroup(lagging, "slow", {key: ">"}, count=1)

    settings = settings_for([sid], stream_retention_s=0, retention_interval_ms=20)
    drainer = Drainer(redis, orders_engine, settings)
    stop = asyncio.Event()
    run = asyncio.create_task(drainer.run(stop))
    try:

        async def passes_later(n: int) -> None:
            target = drainer.retention.stats.retire_passes + n
            deadline = time.monotonic() + 30
            while True:
                if drainer.retention.stats.retire_passes >= target:
                    return
                assert time.monotonic() < deadline, "the drainer stopped its retention passes"
                await asyncio.sleep(0.02)

        await passes_later(5)
        assert await redis.exists(meta_key(sid), key, inv_keys.products(sid)) == 3
        assert drainer.retention.stats.held_back == 1

        # Pending acknowledged, but the rest still undelivered to that group: kept.
        await redis.xack(key, lagging, *await ids_of(redis, key))
        await passes_later(5)
        assert await redis.exists(meta_key(sid))

        # An open reservation keeps it too (it may still expire or be paid).
        await redis.xreadgroup(lagging, "slow", {key: ">"}, count=100)
        await redis.zadd(inv_keys.expiry(sid), {"r_open": 1})
        await redis.xack(key, lagging, *await ids_of(redis, key))
        await passes_later(5)
        assert await redis.exists(meta_key(sid))

        await redis.zrem(inv_keys.expiry(sid), "r_open")
        deadline = time.monotonic() + 30
        while await redis.exists(meta_key(sid)):
            assert time.monotonic() < deadline, await groups_of(redis, key)
            await asyncio.sleep(0.05)
        assert await keys_without_ttl(redis, sid) == []
        assert await redis.zscore(ENDED_STREAMS, sid) is None
        assert drainer.retention.stats.retired == 1

        # Nothing brings it back: not the drainer's next reads, not a sweeper's scans,
        # even one that still finds it listed (as between the deletion and the SREM).
        await redis.sadd(inv_keys.STREAMS, sid)
        try:
            sweeper = Sweeper(redis, Reservations(redis, 600), Sales(redis), _noop, _noop)
            await sweeper.full_scan()
            await sweeper.expire_stream(sid)
            await passes_later(5)
        finally:
            await redis.srem(inv_keys.STREAMS, sid)
        assert await keys_without_ttl(redis, sid) == []
        assert await streams.get(sid) is None
    finally:
        stop.set()
        await run


async def _noop(*_: Any) -> None:
    return None


async def test_unsharded_pass_registers_and_retires_streams_ended_long_ago(
    redis: Redis,
) -> None:
    """The deployment-wide pass (no LIVE_DRAIN_ONLY): ended streams missing from the
    ended registry (ended before retention existed) are found by the registry walk, and
    one past the default seven days is retired. Nothing younger is touched."""
    streams = StreamStore(redis)
    old = await streams.create("old", "Ann")
    young = await streams.create("young", "Ann")
    long_ago = int(time.time() * 1000) - 8 * 24 * HOUR_MS
    for s in (old, young):
        await streams.end(s.id)
        await redis.zrem(ENDED_STREAMS, s.id)  # as if ended before this code existed
    await redis.hset(meta_key(old.id), "ended_at", long_ago)
    for s in (old, young):  # drained and acknowledged by a group
        key, group = inv_keys.events(s.id), f"g_{secrets.token_hex(4)}"
        await redis.xgroup_create(key, group, id="0")
        await redis.xreadgroup(group, "c", {key: ">"}, count=100)
        await redis.xack(key, group, *await ids_of(redis, key))

    retention = Retention(redis, HOUR_MS, 7 * 24 * HOUR_MS, interval_ms=50)
    await retention.register_ended()
    assert await redis.zscore(ENDED_STREAMS, old.id) == long_ago
    assert await redis.zscore(ENDED_STREAMS, young.id) is not None

    # Other drainers on this Redis take the pass lock too, and may be the ones to do it.
    deadline = time.monotonic() + 60
    while await redis.sismember(inv_keys.STREAMS, old.id):
        assert time.monotonic() < deadline, await groups_of(redis, inv_keys.events(old.id))
        await retention.retire_due()
        await asyncio.sleep(0.06)
    assert await keys_without_ttl(redis, old.id) == []
    assert await redis.sismember(inv_keys.STREAMS, young.id)
    assert await streams.get(young.id) is not None
    await out_of_the_way(redis, young.id)


@pytest.mark.slow
async def test_retired_stream_is_served_from_sql_while_others_keep_draining(
    start_service, redis_url: str, database_url: str, orders_engine: AsyncEngine, tmp_path: Path
) -> None:
    # The service's own drainer is off; two sharded drainers with short windows (set by
    # env, as `live drain` reads them) drain this test's streams into the service's SQL.
    svc = start_service(service_env(redis_url, database_url), "--no-drain")
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as client:
        gone, other = await new_stream(client, "gone"), await new_stream(client, "other")
        for s in (gone, other):
            r = await client.post(
                f"/api/streams/{s.id}/products",
                json={"sku": "mug", "title": "Mug", "price_cents": 1250, "stock": 10},
                headers=s.auth,
            )
            assert r.status_code == 201, r.text
        _, token = await new_viewer(client)

        async def buy(s: HostedStream, key: str, then: str) -> str:
            r = await client.post(
                f"/api/streams/{s.id}/reservations",
                json={"sku": "mug", "qty": 2, "key": key},
                headers=bearer(token),
            )
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
            if then == "confirm":
                r = await client.post(f"/api/reservations/{rid}/confirm", headers=bearer(token))
            else:
                r = await client.delete(f"/api/reservations/{rid}", headers=bearer(token))
            assert r.status_code == 200, r.text
            return rid

        paid, cancelled = await buy(gone, "a", "confirm"), await buy(gone, "b", "cancel")
        r = await client.post(
            f"/api/streams/{gone.id}/messages", json={"text": "bye"}, headers=gone.auth
        )
        assert r.status_code == 202
        r = await client.post(f"/api/streams/{gone.id}/end", headers=gone.auth)
        assert r.status_code == 200 and r.json()["status"] == "ended"

        redis = Redis.from_url(redis_url, decode_responses=True)
        group = f"orders_t{secrets.token_hex(4)}"
        env = {
            "LIVE_DRAIN_ONLY": f"{gone.id},{other.id}",
            "LIVE_DRAIN_GROUP": group,
            "LIVE_DRAIN_BLOCK_MS": "50",
            "LIVE_DRAIN_REFRESH_MS": "50",
            "LIVE_EVENTS_RETENTION_S": "0",
            "LIVE_STREAM_RETENTION_S": "1",
            "LIVE_RETENTION_INTERVAL_MS": "50",
        }
        drain = Settings.from_env({**env, "LIVE_SECRET": "x"}).drain
        drainers = [Drainer(redis, orders_engine, drain) for _ in range(2)]
        stop = asyncio.Event()
        runs = [asyncio.create_task(d.run(stop)) for d in drainers]
        events_key = inv_keys.events(gone.id)
        try:
            deadline = time.monotonic() + 60
            while await redis.sismember(inv_keys.STREAMS, gone.id):
                assert time.monotonic() < deadline, await groups_of(redis, events_key)
                await asyncio.sleep(0.05)
            assert await keys_without_ttl(redis, gone.id) == []
            assert sum(d.retention.stats.retired for d in drainers) == 1

            # The other stream is still sold and drained, by both drainers' loops.
            rid = await buy(other, "c", "confirm")
            while await waiting(redis, group, [other.id]):
                assert time.monotonic() < deadline, "the other stream stopped draining"
                await asyncio.sleep(0.05)
            assert rid in await sql_orders(orders_engine, other.id)
            await asyncio.sleep(0.3)  # several refreshes and reads later...
            assert not await redis.exists(inv_keys.events(gone.id)), "events key came back"
            assert await redis.sismember(inv_keys.STREAMS, other.id)
        finally:
            stop.set()
            await asyncio.gather(*runs)
            await redis.aclose()

        # The retired stream, read-only from SQL.
        r = await client.get(f"/api/streams/{gone.id}")
        assert r.status_code == 200, r.text
        state = r.json()
        assert (state["status"], state["archived"], state["title"]) == ("ended", True, "gone")
        assert state["ended_at"] is not None and state["seq"] is None
        assert (state["sales"], state["viewers"]) == ([], 0)
        assert [(p["sku"], p["stock"], p["stock_left"]) for p in state["products"]] == [
            ("mug", 10, 8)
        ]
        r = await client.get(f"/api/streams/{gone.id}/orders", headers=gone.auth)
        assert r.status_code == 200
        assert {o["id"]: o["status"] for o in r.json()["orders"]} == {
            paid: "paid",
            cancelled: "cancelled",
        }
        r = await client.get(f"/api/streams/{gone.id}/stats", headers=gone.auth)
        assert (r.status_code, r.json()["paid"], r.json()["revenue_cents"]) == (200, 1, 2500)
        r = await client.post(f"/api/streams/{gone.id}/end", headers=gone.auth)
        assert (r.status_code, r.json()["archived"]) == (200, True)
        r = await client.post(f"/api/streams/{gone.id}/pin", json={"sku": "mug"}, headers=gone.auth)
        assert (r.status_code, r.json()["error"]) == (409, "stream_ended")
        r = await client.get(f"/api/streams/{gone.id}/mutes", headers=gone.auth)
        assert (r.status_code, r.json()["error"]) == (410, "stream_archived")
        r = await client.get(f"/api/streams/{other.id}")
        assert r.status_code == 200 and "archived" not in r.json()
        r = await client.get("/api/streams/s_0000000000000000")
        assert (r.status_code, r.json()["error"]) == (404, "unknown_stream")

    # `live reconcile` says the Redis side is gone rather than listing SQL rows as unknown.
    cli_env = service_env(redis_url, database_url, LIVE_DRAIN_GROUP=group)
    out = await asyncio.to_thread(reconcile, cli_env, gone.id, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Redis state retired" in out.stdout and "2 orders (1 paid)" in out.stdout
    assert "unknown to Redis" not in out.stdout
    live = await asyncio.to_thread(reconcile, cli_env, other.id, tmp_path)
    assert live.returncode == 0 and "agree" in live.stdout, live.stdout + live.stderr
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        await StreamStore(redis).end(other.id)
        await out_of_the_way(redis, other.id)
    finally:
        await redis.aclose()
