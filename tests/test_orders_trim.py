"""Trimming a stream's events (orders/retention.py) against real Redis and SQL: only
once every consumer group has acknowledged them and only past the window. Windows are
short here and set per drainer; the machine's Redis is shared, so the drainer is sharded
to this test's own stream."""

from __future__ import annotations

import asyncio
import secrets
import time

import orjson
from helpers.orders import (
    emit_status,
    groups_of,
    ids_of,
    new_rid,
    new_sid,
    reservation,
    settings_for,
    sql_orders,
)
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from orders.drain import Drainer

HOUR_MS = 3600 * 1000


async def drain_new(drainer: Drainer, sid: str, timeout_s: float = 30) -> None:
    """Step until the drainer's group has been delivered everything (entries other
    consumers hold pending may stay so)."""
    key = inv_keys.events(sid)
    deadline = time.monotonic() + timeout_s
    while True:
        await drainer.step()
        mine = [g for g in await drainer.redis.xinfo_groups(key) if g["name"] == drainer.group]
        if mine and mine[0]["lag"] == 0:
            return
        assert time.monotonic() < deadline, "drainer did not catch up"


async def settle(drainer: Drainer, sid: str) -> None:
    """One more event, drained and acknowledged: the drainer's trim pass follows its
    acks (at most once per interval per stream, so wait an interval first)."""
    await asyncio.sleep(drainer.settings.retention_interval_ms / 1000 * 2)
    await emit_status(drainer.redis, sid, new_rid(sid), "paid")
    await drain_new(drainer, sid)


async def test_events_are_trimmed_only_once_every_group_acked_and_past_the_window(
    redis: Redis, orders_engine: AsyncEngine
) -> None:
    sid = new_sid()
    key = inv_keys.events(sid)
    # 300 events from two hours ago (explicit ids: entry ids are times), then fresh ones.
    old = int(time.time() * 1000) - 2 * HOUR_MS
    rids = [new_rid(sid) for _ in range(300)]
    for i, rid in enumerate(rids):
        data = orjson.dumps(reservation(sid, rid, "reserved", created_at=old))
        await redis.xadd(key, {"type": "reservation.created", "data": data}, id=f"{old}-{i}")
    for _ in range(5):
        await emit_status(redis, sid, new_rid(sid), "paid")
    # Not in the registry `live:streams`: the drainer here is sharded to it and needs no
    # registry, and so the unsharded drainers of other tests on this Redis (whose groups
    # would count too, and may be left behind when they stop) never see it.
    old_ids = await ids_of(redis, key)
    old_ids, fresh_ids = old_ids[:300], old_ids[300:]

    # A second, independent consumer group that lags: 50 entries read, not acknowledged.
    lagging = f"lagging_{secrets.token_hex(4)}"
    await redis.xgroup_create(key, lagging, id="0")
    await redis.xreadgroup(lagging, "slow", {key: ">"}, count=50)
    # And in the drainer's own group, a consumer that died holding the first 10 entries
    # (claimed only after a minute: they stay pending throughout).
    settings = settings_for(
        [sid], events_retention_s=3600, retention_interval_ms=20, claim_idle_ms=60_000
    )
    await redis.xgroup_create(key, settings.group, id="0")
    await redis.xreadgroup(settings.group, "dead", {key: ">"}, count=10)
    drainer = Drainer(redis, orders_engine, settings)
    await drain_new(drainer, sid)
    for _ in range(3):
        await settle(drainer, sid)
    assert drainer.retention.stats.trim_passes >= 3
    assert (await ids_of(redis, key))[:305] == old_ids + fresh_ids, "a pending entry went"

    # The lagging group acknowledges its 50: the dead consumer's 10 still hold everything.
    await redis.xack(key, lagging, *old_ids[:50])
    await settle(drainer, sid)
    assert (await ids_of(redis, key))[:305] == old_ids + fresh_ids

    # Those 10 acknowledged too: now entries before the lagging group's last delivered one
    # may go (whole nodes only: the cut is approximate), none from it on.
    await redis.xack(key, settings.group, *old_ids[:10])
    deadline = time.monotonic() + 60  # other drainers' groups on this Redis may lag too
    while (await ids_of(redis, key))[0] == old_ids[0]:
        assert time.monotonic() < deadline, await groups_of(redis, key)
        await settle(drainer, sid)
    left = await ids_of(redis, key)
    assert set(old_ids[49:]) <= set(left), "an entry the lagging group needs went"
    assert len(set(old_ids) - set(left)) <= 49

    # The lagging group catches up. A window longer than the events' age keeps them all.
    while await redis.xreadgroup(lagging, "slow", {key: ">"}, count=500):
        pass
    await redis.xack(key, lagging, *await ids_of(redis, key))
    before = await ids_of(redis, key)
    wide_settings = settings.model_copy(update={"events_retention_s": 3 * 3600})
    wide = Drainer(redis, orders_engine, wide_settings)
    for _ in range(3):
        await settle(wide, sid)
    assert set(before) <= set(await ids_of(redis, key))

    # The one-hour window: the two-hour-old events go (but what a node shares with fresh
    # events), every fresh one stays.
    while len(set(old_ids) & set(await ids_of(redis, key))) > 100:
        assert time.monotonic() < deadline + 60, await groups_of(redis, key)
        await settle(drainer, sid)
    assert set(fresh_ids) <= set(await ids_of(redis, key))
    assert drainer.retention.stats.trimmed >= 200
    # Trimming cost the order store nothing (the dead consumer's 10 were acknowledged by
    # hand above, never applied).
    assert set(rids[10:]) <= set(await sql_orders(orders_engine, sid))
