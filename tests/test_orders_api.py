"""Orders and stats through the HTTP API, and `live reconcile`, end to end: reservations
made and confirmed over HTTP, drained by the service's in-process drainer into SQL."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers.api import HostedStream
from helpers.orders import reconcile
from helpers.services import ServiceProcess, service_env
from redis.asyncio import Redis
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncEngine

from orders.models import OrderRow
from realtime import keys as rt_keys

PRICE = 1250


async def _setup(client: httpx.AsyncClient) -> tuple[HostedStream, list[tuple[str, str]]]:
    r = await client.post("/api/streams", json={"title": "orders", "host_name": "Ann"})
    stream = HostedStream(r.json()["id"], r.json()["host_token"])
    r = await client.post(
        f"/api/streams/{stream.id}/products",
        json={"sku": "mug", "title": "Mug", "price_cents": PRICE, "stock": 100},
        headers=stream.auth,
    )
    assert r.status_code == 201, r.text
    viewers = []
    for n in range(5):
        r = await client.post("/api/viewers", json={"name": f"v{n}"})
        viewers.append((r.json()["viewer_id"], r.json()["token"]))
    return stream, viewers


async def _buy_25(client: httpx.AsyncClient, stream: HostedStream, viewers: list) -> dict:
    """25 reservations of 2 units over 5 viewers: 15 confirmed, 4 cancelled, 6 open."""
    rids: dict[str, list[str]] = {"paid": [], "cancelled": [], "reserved": []}

    async def one(i: int) -> None:
        _, token = viewers[i % len(viewers)]
        auth = {"Authorization": f"Bearer {token}"}
        r = await client.post(
            f"/api/streams/{stream.id}/reservations",
            json={"sku": "mug", "qty": 2, "key": f"k{i}"},
            headers=auth,
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        if i < 15:
            r = await client.post(f"/api/reservations/{rid}/confirm", headers=auth)
            assert r.status_code == 200 and r.json()["status"] == "paid", r.text
            rids["paid"].append(rid)
        elif i < 19:
            r = await client.delete(f"/api/reservations/{rid}", headers=auth)
            assert r.status_code == 200, r.text
            rids["cancelled"].append(rid)
        else:
            rids["reserved"].append(rid)

    await asyncio.gather(*(one(i) for i in range(25)))
    return rids


async def _stats_when(
    client: httpx.AsyncClient, stream: HostedStream, paid: int, cancelled: int = 4
) -> dict:
    """The stats once every reservation's last event is in SQL: a cancellation drained
    after the last confirmation still counts as `reserved` until then. The service's
    drainer shares this Redis with every other test's streams, hence the long deadline."""
    deadline = time.monotonic() + 60
    while True:
        r = await client.get(f"/api/streams/{stream.id}/stats", headers=stream.auth)
        assert r.status_code == 200, r.text
        stats = r.json()
        if (stats["paid"], stats["cancelled"], stats["reserved"]) == (
            paid,
            cancelled,
            25 - paid - cancelled,
        ):
            return stats
        assert time.monotonic() < deadline, f"orders not drained: {stats}"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def orders_service(
    redis_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, str]]:
    """One service per order store for this module's tests (each on streams of its own),
    draining with a consumer group of its own."""
    group = f"orders_t{secrets.token_hex(4)}"
    env = service_env(redis_url, database_url, LIVE_DRAIN_GROUP=group, LIVE_DRAIN_BLOCK_MS="50")
    svc = ServiceProcess(env=env).start(tmp_path_factory.mktemp("orders"))
    yield svc, group
    svc.stop()


async def test_orders_pages_and_stats(
    orders_service: tuple[ServiceProcess, str], redis: Redis
) -> None:
    svc, _ = orders_service
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as client:
        stream, viewers = await _setup(client)
        rids = await _buy_25(client, stream, viewers)
        stats = await _stats_when(client, stream, paid=15)
        assert stats["reserved"] == 6 and stats["cancelled"] == 4 and stats["expired"] == 0
        assert stats["revenue_cents"] == 15 * 2 * PRICE
        assert stats["paid_units"] == 30 and stats["reserved_units"] == 12
        # The audience counters come from the realtime hub's hash in Redis.
        await redis.hset(rt_keys.stats(stream.id), mapping={"peak_viewers": 7, "likes": 42})
        r = await client.get(f"/api/streams/{stream.id}/stats", headers=stream.auth)
        assert r.json()["peak_viewers"] == 7 and r.json()["likes"] == 42
        assert r.json()["comments"] == 0 and r.json()["paid"] == 15

        # Keyset pages of 7, newest first, every order exactly once.
        seen: list[dict] = []
        cursor = None
        pages = 0
        while True:
            params = {"limit": "7", **({"cursor": cursor} if cursor else {})}
            r = await client.get(
                f"/api/streams/{stream.id}/orders", params=params, headers=stream.auth
            )
            assert r.status_code == 200, r.text
            body = r.json()
            seen.extend(body["orders"])
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert pages == 4
        assert len(seen) == 25 and len({o["id"] for o in seen}) == 25
        keys = [(o["created_at"], o["id"]) for o in seen]
        assert keys == sorted(keys, reverse=True)
        by_id = {o["id"]: o for o in seen}
        for status, ids in rids.items():
            for rid in ids:
                assert by_id[rid]["status"] == status
        for rid in rids["paid"]:
            assert by_id[rid]["order_id"] == "o_" + rid[2:]
            assert by_id[rid]["total_cents"] == 2 * PRICE

        r = await client.get(
            f"/api/streams/{stream.id}/orders", params={"status": "paid"}, headers=stream.auth
        )
        assert {o["id"] for o in r.json()["orders"]} == set(rids["paid"])

        health = (await client.get("/healthz")).json()
        assert health["status"] == "ok" and health["drain"]["status"] == "ok"


async def test_orders_and_stats_reject_bad_input(
    orders_service: tuple[ServiceProcess, str]
) -> None:
    svc, _ = orders_service
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as client:
        stream, viewers = await _setup(client)
        other, _ = await _setup(client)
        url = f"/api/streams/{stream.id}/orders"
        for params, code in [
            ({"limit": "0"}, "invalid_query"),
            ({"limit": "201"}, "invalid_query"),
            ({"limit": "ten"}, "invalid_query"),
            ({"cursor": "%%%not-a-cursor"}, "invalid_query"),
            ({"cursor": "W10"}, "invalid_query"),
            ({"status": "shipped"}, "invalid_query"),
        ]:
            r = await client.get(url, params=params, headers=stream.auth)
            assert r.status_code == 400, (params, r.text)
            assert r.json()["error"] == code
        for path in (url, f"/api/streams/{stream.id}/stats"):
            assert (await client.get(path)).status_code == 401
            assert (await client.get(path, headers=other.auth)).status_code == 403
            viewer_auth = {"Authorization": f"Bearer {viewers[0][1]}"}
            assert (await client.get(path, headers=viewer_auth)).status_code == 403
        r = await client.get(url, headers=stream.auth)
        assert r.json() == {"orders": [], "next_cursor": None}


@pytest.mark.slow
async def test_reconcile_agrees_then_reports_the_difference(
    orders_service: tuple[ServiceProcess, str],
    redis_url: str,
    database_url: str,
    orders_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    svc, group = orders_service
    env = service_env(redis_url, database_url, LIVE_DRAIN_GROUP=group)
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as client:
        stream, viewers = await _setup(client)
        rids = await _buy_25(client, stream, viewers)
        await _stats_when(client, stream, paid=15)

    ok = await asyncio.to_thread(reconcile, env, stream.id, tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "agree" in ok.stdout

    # SQL loses one paid order and gets another one's status wrong.
    lost, wrong = rids["paid"][0], rids["paid"][1]
    async with orders_engine.begin() as conn:
        await conn.execute(delete(OrderRow).where(OrderRow.id == lost))
        await conn.execute(update(OrderRow).where(OrderRow.id == wrong).values(status="expired"))
    bad = await asyncio.to_thread(reconcile, env, stream.id, tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"{lost}: paid in Redis, missing in SQL" in bad.stdout
    assert f"{wrong}: status is 'paid' in Redis, 'expired' in SQL" in bad.stdout
    assert "sku mug: 42 units reserved/paid in Redis, 38 in SQL" in bad.stdout

    unknown = await asyncio.to_thread(reconcile, env, "s_0000000000000000", tmp_path)
    assert unknown.returncode == 2 and "unknown stream" in unknown.stderr
