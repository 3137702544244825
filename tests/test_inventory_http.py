"""Reservations and flash sales through real `live serve` processes sharing one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from helpers.api import HostedStream, bearer, new_stream, new_viewer
from helpers.services import module_service_pair, service_env, service_pair
from redis.asyncio import Redis

from inventory import keys
from realtime import keys as rt_keys

LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)


async def add_product(
    client: httpx.AsyncClient, s: HostedStream, sku: str, stock: int, **extra: Any
) -> None:
    body = {"sku": sku, "title": "Mug", "price_cents": 1200, "stock": stock, **extra}
    r = await client.post(f"/api/streams/{s.id}/products", json=body, headers=s.auth)
    assert r.status_code == 201, r.text


async def stock_left(client: httpx.AsyncClient, sid: str, sku: str) -> int:
    state = (await client.get(f"/api/streams/{sid}")).json()
    return next(p["stock_left"] for p in state["products"] if p["sku"] == sku)


async def open_units(redis: Redis, sid: str, sku: str) -> int:
    """Units of the sku held by reserved or paid reservations, read from Redis."""
    total = 0
    for raw in (await redis.hgetall(keys.reservations(sid))).values():
        r = orjson.loads(raw)
        if r["sku"] == sku and r["status"] in ("reserved", "paid"):
            total += r["qty"]
    return total


async def reserve(
    client: httpx.AsyncClient, sid: str, token: str, sku: str, qty: Any, key: str
) -> httpx.Response:
    return await client.post(
        f"/api/streams/{sid}/reservations",
        json={"sku": sku, "qty": qty, "key": key},
        headers=bearer(token),
    )


# --- the HTTP surface ---------------------------------------------------------------


@pytest.mark.parametrize("qty", [0, -3, 1.5, "1", 10**20, None, True])
async def test_bad_qty_is_400(client: httpx.AsyncClient, stream: HostedStream, qty: Any) -> None:
    await add_product(client, stream, "Q", 5)
    _, token = await new_viewer(client)
    r = await reserve(client, stream.id, token, "Q", qty, "k")
    assert r.status_code == 400 and r.json()["error"] == "invalid_body", r.text
    assert await stock_left(client, stream.id, "Q") == 5


async def test_reservation_lifecycle_over_http(
    client: httpx.AsyncClient, stream: HostedStream
) -> None:
    await add_product(client, stream, "M", 3, per_user_limit=2)
    _, token = await new_viewer(client)
    _, other = await new_viewer(client, "Cy")

    r = await reserve(client, stream.id, token, "M", 2, "k1")
    assert r.status_code == 201, r.text
    res = r.json()
    assert {"id", "sku", "qty", "price_cents", "expires_at"} <= res.keys()
    assert res["price_cents"] == 1200 and res["status"] == "reserved"
    again = await reserve(client, stream.id, token, "M", 2, "k1")
    assert again.status_code == 200 and again.json()["id"] == res["id"]
    conflict = await reserve(client, stream.id, token, "M", 1, "k1")
    assert conflict.status_code == 409 and conflict.json()["error"] == "idempotency_conflict"
    over = await reserve(client, stream.id, token, "M", 1, "k2")
    assert over.status_code == 409 and over.json()["error"] == "limit_exceeded"
    assert (await reserve(client, stream.id, other, "M", 2, "x")).json()["error"] == "sold_out"
    unknown = await reserve(client, stream.id, other, "NOPE", 1, "y")
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_sku"
    assert await stock_left(client, stream.id, "M") == 1

    url = f"/api/reservations/{res['id']}"
    assert (await client.post(url + "/confirm")).status_code == 401
    assert (await client.post(url + "/confirm", headers=bearer(other))).status_code == 403
    assert (await client.post(url + "/confirm", headers=stream.auth)).status_code == 403
    ok = await client.post(url + "/confirm", headers=bearer(token))
    assert ok.status_code == 200 and ok.json()["status"] == "paid"
    assert ok.json()["order_id"] == "o_" + res["id"][2:]
    twice = await client.post(url + "/confirm", headers=bearer(token))
    assert twice.status_code == 200 and twice.json()["order_id"] == ok.json()["order_id"]
    assert (await client.delete(url, headers=bearer(token))).json()["error"] == "paid"

    r2 = (await reserve(client, stream.id, other, "M", 1, "z")).json()
    assert await stock_left(client, stream.id, "M") == 0
    gone = await client.delete(f"/api/reservations/{r2['id']}", headers=bearer(other))
    assert gone.status_code == 200 and gone.json()["status"] == "cancelled"
    assert await stock_left(client, stream.id, "M") == 1
    late = await client.post(f"/api/reservations/{r2['id']}/confirm", headers=bearer(other))
    assert late.status_code == 409 and late.json()["error"] == "cancelled"
    missing = await client.post("/api/reservations/r_x/confirm", headers=bearer(other))
    assert missing.status_code == 404
    assert (await reserve(client, "s_0000000000000000", token, "M", 1, "q")).status_code == 404


async def test_buy_rate_limited(client: httpx.AsyncClient, stream: HostedStream) -> None:
    await add_product(client, stream, "R", 1000)
    _, token = await new_viewer(client)
    results = await asyncio.gather(
        *(reserve(client, stream.id, token, "R", 1, f"k{i}") for i in range(60))
    )
    codes = Counter(r.status_code for r in results)
    assert codes[429] > 0 and codes[201] > 0 and set(codes) <= {201, 429}
    assert all(r.json()["error"] == "rate_limited" for r in results if r.status_code == 429)
    assert await stock_left(client, stream.id, "R") == 1000 - codes[201]


async def test_flash_sale_over_http(client: httpx.AsyncClient, stream: HostedStream) -> None:
    await add_product(client, stream, "F", 10)
    path = f"/api/streams/{stream.id}/sales"
    body = {"sku": "F", "price_cents": 500, "stock": 3, "per_user_limit": 1, "duration_s": 60}
    _, token = await new_viewer(client)
    assert (await client.post(path, json=body, headers=bearer(token))).status_code == 403
    bad = await client.post(path, json={**body, "duration_s": 0}, headers=stream.auth)
    assert bad.status_code == 400
    r = await client.post(path, json=body, headers=stream.auth)
    assert r.status_code == 201, r.text
    sale = r.json()
    assert sale["id"] and sale["stock"] == 3 and sale["ends_at"] - sale["starts_at"] == 60_000
    assert (await client.post(path, json=body, headers=stream.auth)).status_code == 409
    state = (await client.get(f"/api/streams/{stream.id}")).json()
    assert [s["id"] for s in state["sales"]] == [sale["id"]]
    assert await stock_left(client, stream.id, "F") == 3

    viewers = [(await new_viewer(client, f"v{i}"))[1] for i in range(4)]
    got = [(await reserve(client, stream.id, t, "F", 1, "k")).json() for t in viewers]
    assert [g.get("price_cents") for g in got[:3]] == [500, 500, 500]
    # The sale sold out on the third unit; the fourth viewer buys at the regular price.
    assert got[3]["price_cents"] == 1200 and got[3]["sale_id"] is None
    state = (await client.get(f"/api/streams/{stream.id}")).json()
    assert state["sales"] == []
    assert await stock_left(client, stream.id, "F") == 6


async def test_ending_the_stream_ends_its_sale_and_returns_stock(
    client: httpx.AsyncClient, stream: HostedStream
) -> None:
    await add_product(client, stream, "E", 10)
    body = {"sku": "E", "price_cents": 500, "stock": 4, "duration_s": 600}
    r = await client.post(f"/api/streams/{stream.id}/sales", json=body, headers=stream.auth)
    assert r.status_code == 201, r.text
    _, token = await new_viewer(client)
    assert (await reserve(client, stream.id, token, "E", 1, "k1")).status_code == 201
    seq_before = (await client.get(f"/api/streams/{stream.id}")).json()["seq"]

    assert (await client.post(f"/api/streams/{stream.id}/end", headers=stream.auth)).is_success
    state = (await client.get(f"/api/streams/{stream.id}")).json()
    assert state["status"] == "ended" and state["sales"] == []
    # The unsold sale units went back: 10 units, one of them reserved.
    assert await stock_left(client, stream.id, "E") == 9
    # sale.ended (and its stock message) went out before stream.ended.
    assert state["seq"] >= seq_before + 2


# --- several processes --------------------------------------------------------------


@contextlib.asynccontextmanager
async def clients_of(*services: Any) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One HTTP client per service process, with room for hundreds of requests at once."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=svc.url, timeout=30, limits=LIMITS)
            )
            for svc in services
        ]


# Two processes on one Redis, shared by the storms of this module (each on its own
# stream); the test that kills one has a pair of its own.
two_services = module_service_pair({"LIVE_BUY_RATE_PER_S": "0"}, "two")


@pytest.fixture
def doomed_pair(redis_url: str, sqlite_url: str, tmp_path: Path) -> Iterator[Any]:
    env = service_env(redis_url, sqlite_url, LIVE_BUY_RATE_PER_S="0")
    with service_pair(env, tmp_path) as pair:
        yield pair


@pytest.mark.heavy
@pytest.mark.slow
async def test_no_oversell_across_two_processes(two_services: list[Any], redis: Redis) -> None:
    a, b = two_services
    async with clients_of(a, b) as (ca, cb):
        stream = await new_stream(ca)
        stock = 25
        await add_product(ca, stream, "HOT", stock)
        tokens = [(await new_viewer(ca, f"v{i}"))[1] for i in range(100)]
        won: dict[tuple[int, str], str] = {}
        statuses: Counter[int] = Counter()

        async def attempt(task: int) -> None:
            rng = random.Random(task)
            for n in range(4):  # 300 tasks x 4 = 1200 attempts on 25 units
                viewer = rng.randrange(len(tokens))
                key = f"t{task}-{n // 2}"  # every key is sent twice: a client retry
                client = ca if rng.random() < 0.5 else cb
                r = await reserve(client, stream.id, tokens[viewer], "HOT", 1, key)
                statuses[r.status_code] += 1
                if r.status_code in (200, 201):
                    rid = r.json()["id"]
                    assert won.setdefault((viewer, key), rid) == rid
                else:
                    assert r.status_code == 409 and r.json()["error"] == "sold_out", r.text

        await asyncio.gather(*(attempt(t) for t in range(300)))
        assert len(set(won.values())) == stock  # exactly the stock, never more
        assert statuses[201] == stock and statuses[409] > 1000
        assert await stock_left(cb, stream.id, "HOT") == 0
        assert await open_units(redis, stream.id, "HOT") == stock


@pytest.mark.heavy
@pytest.mark.slow
async def test_per_viewer_limit_under_concurrency(two_services: list[Any], redis: Redis) -> None:
    a, b = two_services
    async with clients_of(a, b) as (ca, cb):
        stream = await new_stream(ca)
        await add_product(ca, stream, "LIM", 100, per_user_limit=3)
        _, token = await new_viewer(ca)
        results = await asyncio.gather(
            *(
                reserve(ca if i % 2 else cb, stream.id, token, "LIM", 1 + i % 2, f"k{i}")
                for i in range(300)
            )
        )
        units = sum(r.json()["qty"] for r in results if r.status_code == 201)
        assert 2 <= units <= 3
        assert {r.json()["error"] for r in results if r.status_code != 201} == {"limit_exceeded"}
        assert await stock_left(ca, stream.id, "LIM") == 100 - units


@pytest.mark.slow
@pytest.mark.heavy
async def test_kill_a_process_mid_storm_keeps_the_books(
    doomed_pair: list[Any], redis: Redis
) -> None:
    a, b = doomed_pair
    async with clients_of(a, b) as (ca, cb):
        stream = await new_stream(ca)
        await add_product(ca, stream, "K", 40)
        tokens = [(await new_viewer(ca, f"v{i}"))[1] for i in range(50)]

        async def attempt(task: int) -> None:
            for n in range(6):
                client = cb if task % 2 else ca
                try:
                    await reserve(client, stream.id, tokens[task % 50], "K", 1, f"{task}-{n}")
                except httpx.HTTPError:
                    pass  # the killed process: outcome unknown to the client

        storm = asyncio.gather(*(attempt(t) for t in range(200)))
        # Killed mid-storm: once units are being reserved, with most attempts to come.
        while await stock_left(ca, stream.id, "K") == 40:
            assert not storm.done(), "the storm reserved nothing"
            await asyncio.sleep(0.01)
        b.stop(signal.SIGKILL)
        await storm
        left = await stock_left(ca, stream.id, "K")
        assert left >= 0
        assert await open_units(redis, stream.id, "K") == 40 - left


@pytest.mark.slow
@pytest.mark.heavy
async def test_expiry_and_sale_end_exactly_once_with_two_sweepers(
    redis_url: str, sqlite_url: str, start_service: Any, redis: Redis
) -> None:
    env = service_env(redis_url, sqlite_url, LIVE_RESERVATION_TTL_S="1")
    a, b = start_service(env), start_service(env)
    async with httpx.AsyncClient(base_url=a.url, timeout=10) as ca:
        stream = await new_stream(ca)
        await add_product(ca, stream, "E", 30)
        tokens = [(await new_viewer(ca, f"v{i}"))[1] for i in range(10)]
        for i, t in enumerate(tokens):
            assert (await reserve(ca, stream.id, t, "E", 2, f"k{i}")).status_code == 201
        body = {"sku": "E", "price_cents": 1, "stock": 5, "duration_s": 1}
        assert (
            await ca.post(f"/api/streams/{stream.id}/sales", json=body, headers=stream.auth)
        ).status_code == 201
        first = (await reserve(ca, stream.id, tokens[0], "E", 1, "late")).json()
        deadline = asyncio.get_running_loop().time() + 10
        while asyncio.get_running_loop().time() < deadline:
            if await stock_left(ca, stream.id, "E") == 30:
                break
            await asyncio.sleep(0.1)
        assert await stock_left(ca, stream.id, "E") == 30
        gone = await ca.post(f"/api/reservations/{first['id']}/confirm", headers=bearer(tokens[0]))
        assert gone.status_code == 410 and gone.json()["error"] == "expired"
    events = [f["type"] for _, f in await redis.xrange(keys.events(stream.id))]
    assert events.count("reservation.expired") == 11
    assert events.count("sale.ended") == 1
    hist = await redis.xrange(rt_keys.history(stream.id))
    broadcast = [orjson.loads(f["m"])["type"] for _, f in hist]
    assert broadcast.count("sale.started") == 1 and broadcast.count("sale.ended") == 1
    assert b.proc.poll() is None


async def test_end_sales_of_stream_announces_once(
    client: httpx.AsyncClient, stream: HostedStream, redis: Redis, redis_url: str
) -> None:
    from live.buying import end_sales_of_stream
    from live.config import Settings
    from live.services import Services

    await add_product(client, stream, "S", 10)
    body = {"sku": "S", "price_cents": 5, "stock": 4, "duration_s": 600}
    assert (
        await client.post(f"/api/streams/{stream.id}/sales", json=body, headers=stream.auth)
    ).status_code == 201
    pooled = Redis.from_url(redis_url, decode_responses=True)
    services = Services.build(Settings(secret=b"x", redis_url=redis_url), pooled, None)  # type: ignore[arg-type]
    try:
        results = await asyncio.gather(
            *(end_sales_of_stream(services, stream.id) for _ in range(5))
        )
    finally:
        services.stock_feed.close()  # its pending coalesced message; the service sends it
        await pooled.aclose()
    assert sorted(len(r) for r in results) == [0, 0, 0, 0, 1]
    assert results[[len(r) for r in results].index(1)][0]["reason"] == "stream_ended"
    assert await stock_left(client, stream.id, "S") == 10
    assert (await client.get(f"/api/streams/{stream.id}")).json()["sales"] == []
    hist = await redis.xrange(rt_keys.history(stream.id))
    assert [orjson.loads(f["m"])["type"] for _, f in hist].count("sale.ended") == 1


@pytest.mark.heavy
@pytest.mark.slow
async def test_flash_sale_storm_across_two_processes(two_services: list[Any], redis: Redis) -> None:
    a, b = two_services
    async with clients_of(a, b) as (ca, cb):
        stream = await new_stream(ca)
        await add_product(ca, stream, "FS", 30)
        body = {"sku": "FS", "price_cents": 99, "stock": 10, "per_user_limit": 1, "duration_s": 60}
        r = await ca.post(f"/api/streams/{stream.id}/sales", json=body, headers=stream.auth)
        assert r.status_code == 201, r.text
        tokens = [(await new_viewer(ca, f"v{i}"))[1] for i in range(60)]
        bought: list[dict] = []

        async def attempt(task: int) -> None:
            for n in range(4):  # 250 tasks x 4 = 1000 attempts
                client = ca if (task + n) % 2 else cb
                r = await reserve(client, stream.id, tokens[task % 60], "FS", 1, f"{task}-{n}")
                if r.status_code == 201:
                    bought.append(r.json())
                else:
                    assert r.json()["error"] in ("sold_out", "limit_exceeded"), r.text

        await asyncio.gather(*(attempt(t) for t in range(250)))
        at_sale = [x for x in bought if x["price_cents"] == 99]
        assert len(at_sale) == 10  # the cap, never more
        assert len({x["viewer_id"] for x in at_sale}) == 10  # its per-viewer limit of 1
        assert len(bought) == 30  # then the 20 regular units, and not one more
        assert await stock_left(ca, stream.id, "FS") == 0
        assert await open_units(redis, stream.id, "FS") == 30
    events = [f for _, f in await redis.xrange(keys.events(stream.id))]
    ended = [orjson.loads(f["data"]) for f in events if f["type"] == "sale.ended"]
    assert len(ended) == 1 and ended[0]["reason"] == "sold_out" and ended[0]["sold"] == 10
    hist = await redis.xrange(rt_keys.history(stream.id))
    assert [orjson.loads(f["m"])["type"] for _, f in hist].count("sale.ended") == 1
