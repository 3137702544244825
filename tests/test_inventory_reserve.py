"""The reservation scripts against a real Redis: reserve, confirm, cancel, expiry (one
sweeper and several racing), and the reload after Redis lost its scripts (NOSCRIPT)."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter

import pytest
from helpers.clock import until_ms
from helpers.inventory import add, events_of, new_sid, stock_of
from redis.asyncio import Redis

from inventory import keys
from inventory.reservations import ReservationError, Reservations
from inventory.sales import Sales
from inventory.sweeper import Sweeper


async def test_reserve_decrements_and_records_event(redis: Redis, res: Reservations) -> None:
    sid = new_sid()
    await add(redis, sid, "A", 5)
    out = await res.reserve(sid, "v1", "A", 2, "k1")
    r = out.reservation
    assert out.created and r["status"] == "reserved" and r["qty"] == 2
    assert r["price_cents"] == 1500 and r["sale_id"] is None and r["stream_id"] == sid
    assert r["expires_at"] - r["created_at"] == 60_000
    assert await stock_of(redis, sid, "A") == 3
    created = [d for t, d in await events_of(redis, sid) if t == "reservation.created"]
    assert created == [r]


async def test_same_key_returns_same_reservation_and_conflicts(
    redis: Redis, res: Reservations
) -> None:
    sid = new_sid()
    await add(redis, sid, "A", 5)
    await add(redis, sid, "B", 5)
    first = await res.reserve(sid, "v1", "A", 2, "k1")
    again = await res.reserve(sid, "v1", "A", 2, "k1")
    assert not again.created and again.reservation == first.reservation
    assert await stock_of(redis, sid, "A") == 3
    for sku, qty in (("A", 3), ("B", 2)):
        with pytest.raises(ReservationError) as err:
            await res.reserve(sid, "v1", sku, qty, "k1")
        assert err.value.code == "idempotency_conflict"
    # Keys are per viewer: another viewer's k1 is a new reservation.
    other = await res.reserve(sid, "v2", "A", 2, "k1")
    assert other.created and other.reservation["id"] != first.reservation["id"]


@pytest.mark.parametrize("qty", [0, -1, 1001, 10**30, 1.5, "2", True, None])
async def test_invalid_qty_is_refused_before_redis(
    redis: Redis, res: Reservations, qty: object
) -> None:
    sid = new_sid()
    await add(redis, sid, "A", 5)
    with pytest.raises(ReservationError) as err:
        await res.reserve(sid, "v1", "A", qty, "k")  # type: ignore[arg-type]
    assert err.value.code == "invalid_qty"
    assert await stock_of(redis, sid, "A") == 5


async def test_sold_out_unknown_sku_and_limit(redis: Redis, res: Reservations) -> None:
    sid = new_sid()
    await add(redis, sid, "A", 3, limit=2)
    codes = []
    for viewer, qty, sku in (("v1", 2, "A"), ("v1", 1, "A"), ("v2", 2, "A"), ("v2", 1, "Z")):
        try:
            await res.reserve(sid, viewer, sku, qty, secrets.token_hex(4))
            codes.append("ok")
        except ReservationError as exc:
            codes.append(exc.code)
    assert codes == ["ok", "limit_exceeded", "sold_out", "unknown_sku"]
    assert await stock_of(redis, sid, "A") == 1


async def test_confirm_cancel_transitions(redis: Redis, res: Reservations) -> None:
    sid = new_sid()
    await add(redis, sid, "A", 4, limit=2)
    a = (await res.reserve(sid, "v1", "A", 2, "a")).reservation
    b = (await res.reserve(sid, "v2", "A", 2, "b")).reservation
    assert await stock_of(redis, sid, "A") == 0

    paid = (await res.confirm(a["id"], "v1")).reservation
    assert paid["status"] == "paid" and paid["order_id"] == "o_" + a["id"][2:]
    assert (await res.confirm(a["id"], "v1")).reservation == paid  # same answer twice
    for call, code in (
        (res.cancel(a["id"], "v1"), "paid"),
        (res.confirm(a["id"], "v2"), "forbidden"),
    ):
        with pytest.raises(ReservationError) as err:
            await call
        assert err.value.code == code

    cancelled = await res.cancel(b["id"], "v2")
    assert cancelled.stock_changed and cancelled.reservation["status"] == "cancelled"
    assert await stock_of(redis, sid, "A") == 2
    again = await res.cancel(b["id"], "v2")  # no second give-back
    assert not again.stock_changed and await stock_of(redis, sid, "A") == 2
    with pytest.raises(ReservationError) as err:
        await res.confirm(b["id"], "v2")
    assert err.value.code == "cancelled"
    # The per-viewer count came back with the stock: v2 may buy 2 again.
    assert (await res.reserve(sid, "v2", "A", 2, "b2")).created
    for rid in ("r_nope", "r_" + "0" * 32):
        with pytest.raises(ReservationError) as err:
            await res.confirm(rid, "v1")
        assert err.value.code == "not_found"
    types = Counter(t for t, _ in await events_of(redis, sid))
    assert types["reservation.created"] == 3
    assert types["reservation.confirmed"] == 1 and types["reservation.cancelled"] == 1


async def test_expiry_returns_stock_once_and_blocks_confirm(private_redis: Redis) -> None:
    redis = private_redis
    sid = new_sid()
    await add(redis, sid, "A", 3)
    short = Reservations(redis, ttl_s=0.2, buys_per_window=0)
    r = (await short.reserve(sid, "v1", "A", 3, "k")).reservation
    assert await short.expire_due(sid) == ([], r["expires_at"])  # not due yet
    await until_ms(r["expires_at"])
    with pytest.raises(ReservationError) as err:  # confirm of an overdue one expires it
        await short.confirm(r["id"], "v1")
    assert err.value.code == "expired" and err.value.stock_changed
    assert await stock_of(redis, sid, "A") == 3
    assert await short.expire_due(sid) == ([], None)
    assert await stock_of(redis, sid, "A") == 3
    types = [t for t, _ in await events_of(redis, sid)]
    assert types.count("reservation.expired") == 1


async def test_concurrent_sweepers_expire_exactly_once(
    private_redis: Redis, private_redis_url: str
) -> None:
    redis, redis_url = private_redis, private_redis_url
    sid = new_sid()
    await add(redis, sid, "A", 200)
    short = Reservations(redis, ttl_s=0.3, buys_per_window=0)
    for start in range(0, 150, 50):
        await asyncio.gather(
            *(short.reserve(sid, f"v{i}", "A", 1, "k") for i in range(start, start + 50))
        )
    assert await stock_of(redis, sid, "A") == 50
    # Four sweepers with their own connections, as four service processes would have.
    clients = [Redis.from_url(redis_url, decode_responses=True) for _ in range(4)]
    changed: list[tuple[str, str]] = []

    async def on_stock(s: str, sku: str) -> None:
        changed.append((s, sku))

    async def on_sale_ended(s: str, sale: dict) -> None:
        raise AssertionError("no sale here")

    sweepers = [
        Sweeper(c, Reservations(c, 0.3, 0), Sales(c), on_stock, on_sale_ended) for c in clients
    ]
    last_expiry = await redis.zrange(keys.expiry(sid), -1, -1, withscores=True)
    await until_ms(last_expiry[0][1])
    try:
        # Many sweeps at once, each expiring in small batches, racing on the same ids.
        results = await asyncio.gather(
            *(sw.expire_stream(sid) for sw in sweepers for _ in range(5))
        )
        while await redis.zcard(keys.expiry(sid)):
            results += await asyncio.gather(*(sw.expire_stream(sid) for sw in sweepers))
    finally:
        for c in clients:
            await c.aclose()
    assert await stock_of(redis, sid, "A") == 200
    types = [t for t, _ in await events_of(redis, sid)]
    assert types.count("reservation.expired") == 150
    assert await redis.hlen(keys.counts(sid)) == 0
    assert sum(results) == len(changed) >= 1


async def test_noscript_reload_after_script_flush(private_redis: Redis) -> None:
    """On this module's own Redis, where flushing the scripts disturbs no service."""
    client = private_redis
    sid = new_sid()
    await add(client, sid, "A", 2)
    await add(client, sid, "B", 3)
    res = Reservations(client, 60, 0)
    batched = Reservations(client, 60, 0, batch=True)
    await res.reserve(sid, "v1", "A", 1, "a")
    await client.script_flush()
    assert await client.script_exists(res._reserve.sha) == [False]
    out = await res.reserve(sid, "v2", "A", 1, "b")
    assert out.created and await stock_of(client, sid, "A") == 0
    assert await client.script_exists(res._reserve.sha) == [True]
    # The batched path too: a whole batch hits NOSCRIPT and every call succeeds.
    await client.script_flush()
    outs = await asyncio.gather(*(batched.reserve(sid, f"w{i}", "B", 1, "k") for i in range(3)))
    assert all(o.created for o in outs) and await stock_of(client, sid, "B") == 0
