"""Flash sales in the inventory scripts against a real Redis: the sale window, its price,
cap and per-viewer limit, its end when sold out or by time (exactly once among racers),
and where units cancelled during a sale go."""

from __future__ import annotations

import asyncio

import pytest
from helpers.clock import until_ms
from helpers.inventory import add, events_of, new_sid, stock_of
from redis.asyncio import Redis

from inventory.reservations import ReservationError, Reservations
from inventory.sales import Sales


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
    await until_ms(sale["ends_at"])
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
