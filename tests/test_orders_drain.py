"""The order drainer against real Redis and real SQL, fed contract-shaped events
(docs/EVENTS.md) directly, so that every ordering a crash can produce is exercised."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from helpers.orders import (
    TYPES,
    add_stream,
    drain_all,
    emit,
    emit_status,
    new_rid,
    new_sid,
    reservation,
    settings_for,
    sql_orders,
    waiting,
)
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from orders.drain import Drainer
from orders.models import OrderRow, ProductRow, StreamRow


@pytest.fixture
def engine(orders_engine: AsyncEngine) -> AsyncEngine:
    return orders_engine


# --- tests ------------------------------------------------------------------------


async def test_stream_product_and_orders_land_in_sql(redis: Redis, engine: AsyncEngine) -> None:
    sid = new_sid()
    await add_stream(redis, sid)
    paid, cancelled, open_ = new_rid(sid), new_rid(sid), new_rid(sid)
    for rid in (paid, cancelled, open_):
        await emit_status(redis, sid, rid, "reserved", qty=2)
    await emit_status(redis, sid, paid, "paid", qty=2)
    await emit_status(redis, sid, cancelled, "cancelled", qty=2)
    await emit(redis, sid, "stream.ended", {"id": sid, "ended_at": 123})

    drainer = Drainer(redis, engine, settings_for([sid]))
    await drain_all(drainer, [sid])

    got = await sql_orders(engine, sid)
    status = {rid: row[OrderRow.__table__.c.keys().index("status")] for rid, row in got.items()}
    assert status == {paid: "paid", cancelled: "cancelled", open_: "reserved"}
    cols = OrderRow.__table__.c.keys()
    assert got[paid][cols.index("order_id")] == "o_" + paid[2:]
    assert got[cancelled][cols.index("order_id")] is None
    async with engine.connect() as conn:
        stream = (await conn.execute(select(StreamRow).where(StreamRow.id == sid))).one()
        product = (await conn.execute(select(ProductRow).where(ProductRow.stream_id == sid))).one()
    assert (stream.title, stream.ended_at) == ("t", 123)
    assert (product.sku, product.stock) == ("mug", 1_000_000)


@pytest.mark.parametrize("batch_size", [1, 500])
async def test_terminal_status_is_never_overwritten(
    redis: Redis, engine: AsyncEngine, batch_size: int
) -> None:
    """Events applied in any order (as after a crash and a claim): first terminal wins,
    `reserved` overwrites nothing; both within one batch and across batches."""
    sid = new_sid()
    await add_stream(redis, sid)
    a, b, c = new_rid(sid), new_rid(sid), new_rid(sid)
    await emit_status(redis, sid, a, "paid")  # confirmed seen before created
    await emit_status(redis, sid, a, "reserved")
    await emit_status(redis, sid, a, "expired")  # a late expiry never un-pays
    await emit_status(redis, sid, b, "cancelled")
    await emit_status(redis, sid, b, "paid")
    await emit_status(redis, sid, c, "reserved")
    await emit_status(redis, sid, c, "reserved")
    drainer = Drainer(redis, engine, settings_for([sid], batch_size=batch_size))
    await drain_all(drainer, [sid])
    idx = OrderRow.__table__.c.keys().index("status")
    got = {rid: row[idx] for rid, row in (await sql_orders(engine, sid)).items()}
    assert got == {a: "paid", b: "cancelled", c: "reserved"}


async def test_replaying_the_whole_stream_changes_nothing(
    redis: Redis, engine: AsyncEngine
) -> None:
    sid = new_sid()
    await add_stream(redis, sid)
    statuses = ["paid", "cancelled", "expired", "reserved"]
    for i in range(400):
        rid = new_rid(sid)
        await emit_status(redis, sid, rid, "reserved", created_at=1_000_000 + i)
        if statuses[i % 4] != "reserved":
            await emit_status(redis, sid, rid, statuses[i % 4], created_at=1_000_000 + i)
    settings = settings_for([sid], batch_size=64)
    await drain_all(Drainer(redis, engine, settings), [sid])
    before = await sql_orders(engine, sid)
    assert len(before) == 400

    # 1: the group re-delivers every entry (as if every XACK had been lost).
    await redis.xgroup_setid(inv_keys.events(sid), settings.group, "0")
    again = Drainer(redis, engine, settings)
    await drain_all(again, [sid])
    assert again.stats.entries >= 400 + 300 + 2
    assert await sql_orders(engine, sid) == before

    # 2: every event appended a second time, in reverse order.
    entries = await redis.xrange(inv_keys.events(sid))
    for _, fields in reversed(entries):
        await redis.xadd(inv_keys.events(sid), fields)
    await drain_all(again, [sid])
    assert await sql_orders(engine, sid) == before


async def test_several_drainers_with_concurrent_producers(
    redis: Redis, engine: AsyncEngine
) -> None:
    sids = [new_sid() for _ in range(3)]
    for sid in sids:
        await add_stream(redis, sid)
    expected: dict[str, dict[str, str]] = {sid: {} for sid in sids}

    async def produce(sid: str, n: int) -> None:
        for i in range(n):
            rid = new_rid(sid)
            await emit_status(redis, sid, rid, "reserved")
            final = ("paid", "cancelled", "reserved")[i % 3]
            if final != "reserved":
                await emit_status(redis, sid, rid, final)
            expected[sid][rid] = final

    settings = settings_for(sids, batch_size=40)
    drainers = [Drainer(redis, engine, settings) for _ in range(4)]
    stop = asyncio.Event()
    runs = [asyncio.create_task(d.run(stop)) for d in drainers]
    await asyncio.gather(*(produce(sid, 300) for sid in sids for _ in range(2)))
    deadline = time.monotonic() + 60
    while await waiting(redis, settings.group, sids):
        assert time.monotonic() < deadline, "drainers did not catch up"
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*runs)
    assert sum(1 for d in drainers if d.stats.entries) >= 2, "work was not shared"
    idx = OrderRow.__table__.c.keys().index("status")
    for sid in sids:
        got = {rid: row[idx] for rid, row in (await sql_orders(engine, sid)).items()}
        assert got == expected[sid]


async def test_a_hot_stream_among_hundreds_of_quiet_ones_drains_in_big_batches(
    redis: Redis, engine: AsyncEngine
) -> None:
    """A flash sale's backlog must not be read one entry per stream per call just
    because many other streams (ended ones wait for their retention) are listed."""
    quiet = [new_sid() for _ in range(300)]
    hot = new_sid()
    expected = {new_rid(hot) for _ in range(2000)}
    # Only this test's streams (`only`), kept out of the shared registry.
    async with redis.pipeline(transaction=False) as pipe:
        for sid in [*quiet, hot]:
            pipe.xadd(inv_keys.events(sid), {"type": "stream.created", "data": orjson.dumps({
                "id": sid, "title": "t", "host_name": "Ann", "status": "live",
                "pinned_sku": None, "created_at": int(time.time() * 1000), "ended_at": None,
            })})
        for rid in expected:
            pipe.xadd(inv_keys.events(hot), {
                "type": TYPES["reserved"], "data": orjson.dumps(reservation(hot, rid, "reserved")),
            })
        await pipe.execute()
    settings = settings_for([*quiet, hot], batch_size=500)
    drainer = Drainer(redis, engine, settings)
    try:
        steps = 0
        while await waiting(redis, settings.group, [hot]):
            await drainer.step()
            steps += 1
            assert steps <= 25, "the hot stream drains a handful of entries per batch"
        assert set(await sql_orders(engine, hot)) == expected
        assert await waiting(redis, settings.group, quiet) == 0
    finally:
        await redis.delete(*(inv_keys.events(sid) for sid in [*quiet, hot]))


async def test_pending_entries_of_a_dead_consumer_are_claimed(
    redis: Redis, engine: AsyncEngine
) -> None:
    sid = new_sid()
    await add_stream(redis, sid)
    rids = [new_rid(sid) for _ in range(50)]
    for rid in rids:
        await emit_status(redis, sid, rid, "paid")
    settings = settings_for([sid], claim_idle_ms=200)
    key = inv_keys.events(sid)
    await redis.xgroup_create(key, settings.group, id="0")
    # A consumer that read everything and died before writing or acknowledging.
    taken = await redis.xreadgroup(settings.group, "dead-consumer", {key: ">"}, count=1000)
    assert len(taken[0][1]) == 52
    assert (await redis.xpending(key, settings.group))["pending"] == 52

    drainer = Drainer(redis, engine, settings)
    assert await drainer.step() == 0  # nothing new, nothing idle long enough yet
    # Until Redis counts every one of them idle for long enough to be claimed.
    deadline = time.monotonic() + 10
    while True:
        held = await redis.xpending_range(key, settings.group, "-", "+", 100)
        if min(e["time_since_delivered"] for e in held) > settings.claim_idle_ms:
            break
        assert time.monotonic() < deadline, held[:3]
        await asyncio.sleep(0.02)
    drainer.intake.next_claim = 0.0  # the claim pass is periodic; run it now
    await drain_all(drainer, [sid])
    assert drainer.stats.claimed == 52
    assert (await redis.xpending(key, settings.group))["pending"] == 0
    assert set(await sql_orders(engine, sid)) == set(rids)


async def test_malformed_event_is_dead_lettered_and_does_not_block(
    redis: Redis, engine: AsyncEngine
) -> None:
    sid = new_sid()
    await add_stream(redis, sid)
    good = new_rid(sid)
    await redis.xadd(inv_keys.events(sid), {"type": "reservation.confirmed", "data": "{oops"})
    await emit(redis, sid, "reservation.confirmed", {"id": "r_x", "stream_id": sid})
    await emit_status(redis, sid, good, "paid")
    settings = settings_for([sid])
    drainer = Drainer(redis, engine, settings)
    await drain_all(drainer, [sid])
    assert set(await sql_orders(engine, sid)) == {good}
    assert drainer.stats.dead_lettered == 2
    # Kept in the stream's own dead letters, with the reason and the group that set
    # them aside (a service sharing this Redis drains the stream with its own group).
    dead = [
        (i, f) for i, f in await redis.xrange(inv_keys.dead_letters(sid))
        if f["group"] == settings.group
    ]
    assert len(dead) == 2
    assert all(fields["why"] for _, fields in dead)
