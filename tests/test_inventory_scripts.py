"""The inventory's Lua scripts against a real Redis: reserve, confirm, cancel, expire,
flash sales, NOSCRIPT reload, and concurrency straight at the scripts."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
from redis.asyncio import Redis

from inventory import keys
from inventory.catalog import Catalog, Product
from inventory.reservations import ReservationError, Reservations
from inventory.sales import Sales
from inventory.sweeper import Sweeper
from live.embedded_redis import EmbeddedRedis


def new_sid() -> str:
    return f"s_{secrets.token_hex(8)}"


async def add(redis: Redis, sid: str, sku: str, stock: int, limit: int | None = None) -> None:
    await Catalog(redis).add(Product(sid, sku, "Scarf", 1500, stock, limit, int(time.time())))


async def stock_of(redis: Redis, sid: str, sku: str) -> int:
    return int(await redis.hget(keys.stock(sid), sku) or 0)


async def events_of(redis: Redis, sid: str) -> list[tuple[str, dict]]:
    entries = await redis.xrange(keys.events(sid))
    return [(f["type"], orjson.loads(f["data"])) for _, f in entries]


@pytest.fixture(scope="module")
def private_redis_url() -> Iterator[str]:
    """A Redis of this module's own: no service's sweeper shares it, so tests that count
    who expired what see only their own sweepers."""
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
async def private_redis(private_redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(private_redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def pooled(redis_url: str) -> AsyncIterator[Redis]:
    """A client with room for hundreds of commands in flight at once."""
    client = Redis.from_url(redis_url, decode_responses=True, max_connections=600)
    yield client
    await client.aclose()


@pytest.fixture
def res(pooled: Redis) -> Reservations:
    return Reservations(pooled, ttl_s=60, buys_per_window=0)


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
    await asyncio.sleep(0.25)
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
    await asyncio.sleep(0.35)
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


@pytest.mark.parametrize("batch", [False, True], ids=["pooled", "batched"])
async def test_many_tasks_never_oversell(redis: Redis, pooled: Redis, batch: bool) -> None:
    res = Reservations(pooled, ttl_s=60, buys_per_window=0, batch=batch)
    sid = new_sid()
    await add(redis, sid, "A", 37)
    results = await asyncio.gather(
        *(res.reserve(sid, f"v{i}", "A", 1 + i % 2, "k") for i in range(500)),
        return_exceptions=True,
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    errors = {r.code for r in results if isinstance(r, ReservationError)}
    assert errors == {"sold_out"}
    assert sum(r.reservation["qty"] for r in ok) == 37 - await stock_of(redis, sid, "A")
    assert await stock_of(redis, sid, "A") in (0, 1)


async def evalsha_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_burst_for_one_stream_is_one_script_run_with_per_request_answers(
    private_redis: Redis,
) -> None:
    client = private_redis
    res = Reservations(client, 60, 0, batch=True)
    sid, other = new_sid(), new_sid()
    await add(client, sid, "A", 3, limit=2)
    await add(client, other, "A", 1)
    await res.reserve(sid, "warm", "A", 1, "w")  # loads the script
    before = await evalsha_calls(client)
    results = await asyncio.gather(
        res.reserve(sid, "v1", "A", 1, "same"),
        res.reserve(sid, "v1", "A", 1, "same"),  # a retry inside the same batch
        res.reserve(sid, "v1", "A", 1, "second"),
        res.reserve(sid, "v1", "A", 1, "third"),  # over the per-viewer limit of 2
        res.reserve(sid, "v2", "A", 1, "k"),  # the last unit is gone by now
        res.reserve(sid, "v3", "B", 1, "k"),
        res.reserve(other, "v1", "A", 1, "same"),  # another stream, its own run
        return_exceptions=True,
    )
    assert await evalsha_calls(client) - before == 2
    first, retry, second = results[:3]
    assert not isinstance(first, BaseException) and first.created
    assert not isinstance(retry, BaseException) and not retry.created
    assert retry.reservation["id"] == first.reservation["id"]
    assert not isinstance(second, BaseException) and second.created
    codes = [getattr(r, "code", None) for r in results[3:6]]
    assert codes == ["limit_exceeded", "sold_out", "unknown_sku"]
    assert not isinstance(results[6], BaseException) and results[6].created
    assert await stock_of(client, sid, "A") == 0 and await stock_of(client, other, "A") == 0


async def test_a_burst_larger_than_a_batch_still_never_oversells(
    private_redis: Redis,
) -> None:
    client = private_redis
    res = Reservations(client, 60, 0, batch=True)
    sid = new_sid()
    await add(client, sid, "A", 100)
    before = await evalsha_calls(client)
    results = await asyncio.gather(
        *(res.reserve(sid, f"v{i}", "A", 1, "k") for i in range(300)),
        return_exceptions=True,
    )
    runs = await evalsha_calls(client) - before
    assert 300 / res._batcher.max_items <= runs < 300  # type: ignore[union-attr]
    created = [r for r in results if not isinstance(r, BaseException) and r.created]
    assert len(created) == 100
    assert {r.code for r in results if isinstance(r, ReservationError)} == {"sold_out"}
    assert await stock_of(client, sid, "A") == 0
    types = [t for t, _ in await events_of(client, sid)]
    assert types.count("reservation.created") == 100


async def test_sale_window_price_cap_and_sold_out_end(redis: Redis, res: Reservations) -> None:
    sid = new_sid()
    await add(redis, sid, "A", 10, limit=5)
    sales = Sales(redis)
    started = await sales.start(sid, "A", 300, 4, 2, 30)
    sale = started.sale
    assert sale["stock"] == 4 and sale["price_cents"] == 300
    assert await stock_of(redis, sid, "A") == 4  # viewers can buy the sale's units now
    with pytest.raises(Exception) as err:
        await sales.start(sid, "A", 200, 1, None, 30)
    assert getattr(err.value, "code", None) == "sale_active"

    r1 = (await res.reserve(sid, "v1", "A", 2, "a", sale_id=sale["id"])).reservation
    assert r1["price_cents"] == 300 and r1["sale_id"] == sale["id"]
    with pytest.raises(ReservationError) as e:  # the sale's own per-viewer limit
        await res.reserve(sid, "v1", "A", 1, "b")
    assert e.value.code == "limit_exceeded"
    out = await res.reserve(sid, "v2", "A", 2, "a")
    assert out.ended_sale is not None and out.ended_sale["reason"] == "sold_out"
    assert out.ended_sale["sold"] == 4
    # The 6 regular units are back at the regular price; the sale id is no longer valid.
    assert await stock_of(redis, sid, "A") == 6
    with pytest.raises(ReservationError) as e:
        await res.reserve(sid, "v3", "A", 1, "c", sale_id=sale["id"])
    assert e.value.code == "sale_not_active"
    regular = (await res.reserve(sid, "v3", "A", 1, "d")).reservation
    assert regular["price_cents"] == 1500 and regular["sale_id"] is None
    # A sale unit cancelled after its sale ended goes back to regular stock.
    await res.cancel(r1["id"], "v1")
    assert await stock_of(redis, sid, "A") == 7
    ended = [d for t, d in await events_of(redis, sid) if t == "sale.ended"]
    assert len(ended) == 1 and await sales.active(sid) == []


async def test_sale_ends_by_time_once_among_racers(redis: Redis, res: Reservations) -> None:
    sid = new_sid()
    await add(redis, sid, "A", 10)
    sales = Sales(redis)
    sale = (await sales.start(sid, "A", 300, 3, None, 1)).sale
    regular = (await res.reserve(sid, "v0", "A", 1, "pre", sale_id=None)).reservation
    assert regular["sale_id"] == sale["id"]  # during the sale, buys get the sale price
    assert [s["id"] for s in await sales.active(sid)] == [sale["id"]]
    assert await sales.end(sid, "A", sale["id"]) is None  # not over yet
    await asyncio.sleep(1.05)
    ends = await asyncio.gather(
        *(sales.end(sid, "A", sale["id"]) for _ in range(20)),
        res.reserve(sid, "v1", "A", 1, "after"),
        return_exceptions=True,
    )
    reserve_result = ends[-1]
    ended = [e for e in ends[:-1] if e is not None]
    if not isinstance(reserve_result, BaseException) and reserve_result.ended_sale:
        ended.append(reserve_result.ended_sale)
    # The sweeper of a service process sharing this Redis may win the race too; either
    # way the sale ends exactly once, by time, with the one unit it sold.
    assert len(ended) <= 1
    events = [d for t, d in await events_of(redis, sid) if t == "sale.ended"]
    assert len(events) == 1
    assert events[0]["reason"] == "time" and events[0]["sold"] == 1
    if ended:
        assert ended[0]["reason"] == "time" and ended[0]["sold"] == 1
    assert await sales.active(sid) == []
    # 10 - 1 sale unit - 1 regular unit bought after the end
    assert await stock_of(redis, sid, "A") == 8


async def test_regular_unit_cancelled_during_sale_goes_to_held(
    redis: Redis, res: Reservations
) -> None:
    sid = new_sid()
    await add(redis, sid, "A", 10)
    r = (await res.reserve(sid, "v1", "A", 2, "k")).reservation
    sales = Sales(redis)
    await sales.start(sid, "A", 100, 3, None, 60)
    await res.cancel(r["id"], "v1")
    assert await stock_of(redis, sid, "A") == 3  # the sale's units, not more
    ended = await sales.end_all(sid)
    assert [e["reason"] for e in ended] == ["stream_ended"]
    assert await stock_of(redis, sid, "A") == 10


async def test_noscript_reload_after_script_flush() -> None:
    with EmbeddedRedis() as server:
        client = Redis.from_url(server.url, decode_responses=True)
        try:
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
            outs = await asyncio.gather(
                *(batched.reserve(sid, f"w{i}", "B", 1, "k") for i in range(3))
            )
            assert all(o.created for o in outs) and await stock_of(client, sid, "B") == 0
        finally:
            await client.aclose()
