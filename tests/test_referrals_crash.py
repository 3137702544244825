"""Referral commissions through a crash: a service process SIGKILLed in the middle of
a burst of referred buyers (regular and group orders), the other process's drainer
claiming what the dead one left pending. Afterwards the ledger holds exactly one line
per order and level (none twice, none missing), its total is the rates times the paid
orders, refunds are reversed, and `live reconcile` agrees."""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
from conftest import service_env
from redis.asyncio import Redis
from social_support import (
    Viewer,
    drain_group,
    group_buy,
    join,
    ledger,
    open_group,
    open_shop,
    pay,
    settled,
    sql_orders,
    viewers,
)
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PRICE = 1237  # odd, so that floor() matters
L1, L2 = 1500, 700


async def _link(c: httpx.AsyncClient, sid: str, v: Viewer) -> str:
    r = await c.post(f"/api/streams/{sid}/referral-links", headers=v.auth)
    assert r.status_code == 201, r.text
    return r.json()["code"]


async def _buy(c: httpx.AsyncClient, sid: str, v: Viewer, key: str) -> tuple[str | None, bool]:
    try:
        r = await c.post(
            f"/api/streams/{sid}/reservations",
            json={"sku": "tea", "qty": 1 + len(key) % 3, "key": key},
            headers=v.auth,
        )
        if r.status_code != 201:
            return None, False
        rid = r.json()["id"]
        p = await pay(c, rid, v)
        return rid, p.status_code == 200 and p.json()["status"] == "paid"
    except httpx.TransportError:  # the process died under this request
        return None, False


async def test_sigkilled_service_mid_burst_of_referred_buyers(
    redis: Redis,
    redis_url: str,
    database_url: str,
    orders_engine: AsyncEngine,
    start_service: Any,
) -> None:
    group = drain_group()
    env = service_env(
        redis_url,
        database_url,
        LIVE_LOG_LEVEL="info",
        LIVE_DRAIN_CLAIM_IDLE_MS="500",
        LIVE_DRAIN_GROUP=group,
        LIVE_BUY_RATE_PER_S="0",
    )
    svc_a, svc_b = start_service(env), start_service(env)
    a = httpx.AsyncClient(base_url=svc_a.url, timeout=15)
    b = httpx.AsyncClient(base_url=svc_b.url, timeout=15)
    async with a, b:
        shop = await open_shop(b, stock=100_000, price_cents=PRICE)
        r = await b.put(
            f"/api/streams/{shop.id}/commission",
            json={"level1_bps": L1, "level2_bps": L2},
            headers=shop.auth,
        )
        assert r.status_code == 200, r.text
        (top,) = await viewers(b, 1)
        (mid,) = await viewers(b, 1, ref=await _link(b, shop.id, top))
        deep = await viewers(b, 30, ref=await _link(b, shop.id, mid))  # two levels up
        shallow = await viewers(b, 10)  # bound later, one level up
        for v in shallow:
            r = await b.post(
                f"/api/streams/{shop.id}/referrals/bind",
                json={"ref": await _link(b, shop.id, top)},
                headers=v.auth,
            )
            assert r.status_code == 200 and r.json()["referrer_id"] == top.id, r.text
        plain = await viewers(b, 10)  # brought by nobody
        referrer_of = {v.id: mid.id for v in deep} | {v.id: top.id for v in shallow}
        referrer_of[mid.id] = top.id
        gb = await group_buy(b, shop, size=2, price=999)

        results: list[tuple[str | None, bool]] = []

        async def buyer(n: int, v: Viewer) -> None:
            for i in range(8):
                c = a if (n + i) % 2 else b
                results.append(await _buy(c, shop.id, v, f"k{n}-{i}"))

        async def pair(n: int, x: Viewer, y: Viewer) -> None:
            """Two referred buyers form a group (through the surviving process)."""
            g = await open_group(b, gb["id"], x, key=f"g{n}")
            if g.status_code != 201:
                return
            j = await join(b, g.json()["share_code"], y, key=f"g{n}")
            if j.status_code != 201:
                return
            await pay(b, g.json()["reservation"]["id"], x)
            await pay(b, j.json()["reservation"]["id"], y)

        async def killer() -> None:
            await asyncio.sleep(random.uniform(0.5, 1.2))
            svc_a.stop(signal.SIGKILL, timeout_s=5)

        everyone = [*deep, *shallow, *plain, mid]
        await asyncio.gather(
            *(buyer(n, v) for n, v in enumerate(everyone)),
            *(pair(n, deep[2 * n], deep[2 * n + 1]) for n in range(10)),
            killer(),
        )
        told_paid = {rid for rid, ok in results if ok}
        assert len(told_paid) > 100, "the burst did not get going"

        # The host refunds a few paid orders (reversal lines), one of them twice.
        await settled(redis, orders_engine, shop.id, group)
        paid_rows = [
            o for o in (await sql_orders(orders_engine, shop.id)).values() if o["status"] == "paid"
        ]
        refunded = random.Random(3).sample(paid_rows, 8)
        for o in [*refunded, refunded[0]]:
            r = await b.post(f"/api/orders/{o['order_id']}/refund", headers=shop.auth)
            assert r.status_code == 200 and r.json()["status"] == "refunded", r.text

        await settled(redis, orders_engine, shop.id, group)
        orders = await sql_orders(orders_engine, shop.id)
        lines = await ledger(orders_engine, shop.id)
        report = (await b.get(f"/api/streams/{shop.id}/referrals", headers=shop.auth)).json()
        mine = {
            v.id: (await b.get("/api/me/commissions", headers=v.auth)).json() for v in (top, mid)
        }

    assert all(orders[rid]["status"] in ("paid", "refunded") for rid in told_paid)
    group_paid = [o for o in orders.values() if o["group_id"] and o["status"] == "paid"]
    assert group_paid, "no group order was paid: the test proves nothing"

    # No line twice: one per (order, level, kind), whatever the replays.
    keys = Counter((ln["order_id"], ln["level"], ln["kind"]) for ln in lines)
    assert max(keys.values()) == 1

    # Exactly the lines the paid and refunded orders call for, at the rates in force.
    expected: dict[tuple[str, int, str], tuple[str, int]] = {}
    for o in orders.values():
        if o["status"] not in ("paid", "refunded") or o["viewer_id"] not in referrer_of:
            continue
        total = o["qty"] * o["price_cents"]
        chain = [(1, referrer_of[o["viewer_id"]], L1)]
        if chain[0][1] in referrer_of:
            chain.append((2, referrer_of[chain[0][1]], L2))
        kinds = [("sale", 1)] + ([("reversal", -1)] if o["status"] == "refunded" else [])
        for kind, sign in kinds:
            for level, earner, bps in chain:
                expected[(o["order_id"], level, kind)] = (earner, sign * (total * bps // 10_000))
    got = {
        (ln["order_id"], ln["level"], ln["kind"]): (ln["viewer_id"], ln["amount_cents"])
        for ln in lines
    }
    assert got == expected

    # Ledger totals: the rate times the (net) paid orders of the people each one brought.
    net_paid: dict[str, int] = defaultdict(int)
    for o in orders.values():
        if o["status"] == "paid":
            net_paid[o["viewer_id"]] += o["qty"] * o["price_cents"]
    by_earner: dict[str, int] = defaultdict(int)
    for earner, amount in got.values():
        by_earner[earner] += amount
    assert by_earner[mid.id] == sum(
        sum(
            o["qty"] * o["price_cents"] * L1 // 10_000
            for o in orders.values()
            if o["viewer_id"] == v.id and o["status"] == "paid"
        )
        for v in deep
    )
    assert mine[top.id]["total_cents"] == by_earner[top.id] > 0
    assert mine[mid.id]["total_cents"] == by_earner[mid.id] > 0
    rows = {r["viewer_id"]: r for r in report["referrers"]}
    assert rows[mid.id]["referred"] == len(deep)
    assert rows[top.id]["referred"] == 1 + len(shallow)
    assert rows[mid.id]["commission_cents"] == by_earner[mid.id]
    assert rows[mid.id]["gmv_cents"] == sum(net_paid[v.id] for v in deep)
    assert rows[top.id]["orders"] == sum(
        1
        for o in orders.values()
        if o["status"] == "paid" and referrer_of.get(o["viewer_id"]) == top.id
    )
