"""Many buys at once straight at the reserve script: never an oversell, whether each
call runs the script itself or calls are batched into one run per stream (and a burst
larger than a batch is several runs)."""

from __future__ import annotations

import asyncio

import pytest
from helpers.inventory import add, evalsha_calls, events_of, new_sid, stock_of
from redis.asyncio import Redis

from inventory.reservations import ReservationError, Reservations


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
