"""Referral commissions over HTTP: rates, links, first-touch binding (self-referral and
cycles refused), ledger lines at the rates of the sale, reversals, the reports."""

from __future__ import annotations

import httpx
import pytest
from helpers.services import SERVICE_DRAIN_GROUP
from redis.asyncio import Redis
from social_support import Viewer, ledger, open_shop, pay, settled, viewers
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.timeout(120)


async def link(c: httpx.AsyncClient, sid: str, v: Viewer) -> str:
    r = await c.post(f"/api/streams/{sid}/referral-links", headers=v.auth)
    assert r.status_code == 201, r.text
    assert r.json()["url"].endswith(f"/s/{sid}?ref={r.json()['code']}")
    return r.json()["code"]


async def bind(c: httpx.AsyncClient, sid: str, v: Viewer, code: str) -> httpx.Response:
    return await c.post(f"/api/streams/{sid}/referrals/bind", json={"ref": code}, headers=v.auth)


async def test_rates_links_and_binding_rules(client: httpx.AsyncClient) -> None:
    shop = await open_shop(client, stock=10)
    for body in (
        {"level1_bps": 3001, "level2_bps": 0},
        {"level1_bps": 0, "level2_bps": -1},
        {"level1_bps": 3000, "level2_bps": 2001},
        {"level1_bps": "10", "level2_bps": 0},
    ):
        r = await client.put(f"/api/streams/{shop.id}/commission", json=body, headers=shop.auth)
        assert r.status_code == 400, (body, r.text)
    r = await client.put(
        f"/api/streams/{shop.id}/commission",
        json={"level1_bps": 3000, "level2_bps": 2000},
        headers=shop.auth,
    )
    assert r.status_code == 200 and r.json()["level1_bps"] == 3000
    a, b, c, d = await viewers(client, 4)
    r = await client.put(
        f"/api/streams/{shop.id}/commission",
        json={"level1_bps": 1, "level2_bps": 1},
        headers=a.auth,
    )
    assert r.status_code == 403
    code_a = await link(client, shop.id, a)
    assert await link(client, shop.id, a) == code_a  # the same viewer, the same code
    # Self-referral is refused and changes nothing.
    r = await bind(client, shop.id, a, code_a)
    assert (r.status_code, r.json()["error"]) == (409, "referral_refused")
    assert (await bind(client, shop.id, b, code_a)).json()["referrer_id"] == a.id
    code_b = await link(client, shop.id, b)
    assert (await bind(client, shop.id, c, code_b)).json()["bound"] is True
    code_c = await link(client, shop.id, c)
    # A brought B, B brought C: B's or C's code offered to A would close a cycle.
    for code in (code_b, code_c):
        r = await bind(client, shop.id, a, code)
        assert (r.status_code, r.json()["error"]) == (409, "referral_refused")
    # First touch wins for good: C stays B's.
    r = await bind(client, shop.id, c, code_a)
    assert r.status_code == 200 and r.json() == {
        "stream_id": shop.id,
        "viewer_id": c.id,
        "referrer_id": b.id,
        "bound": False,
    }
    # Unknown codes, and another stream's code on this stream's endpoint.
    other = await open_shop(client, stock=1)
    assert (await bind(client, shop.id, d, "f" * 24)).status_code == 404
    assert (await bind(client, other.id, d, code_a)).status_code == 404
    # Binding at sign-up, by code alone (it names its stream).
    r = await client.post("/api/viewers", json={"name": "e", "ref": code_c})
    assert r.status_code == 201 and r.json()["referral"]["referrer_id"] == c.id
    r = await client.post("/api/viewers", json={"name": "e", "ref": "nope"})
    assert (r.status_code, r.json()["error"]) == (404, "unknown_referral")


async def test_ledger_lines_at_the_rates_of_the_sale(
    client: httpx.AsyncClient, redis: Redis, orders_engine_for_service: AsyncEngine
) -> None:
    engine = orders_engine_for_service
    shop = await open_shop(client, stock=100, price_cents=999)
    a, b = await viewers(client, 2)
    (c,) = await viewers(client, 1, ref=await link(client, shop.id, b))
    assert (await bind(client, shop.id, b, await link(client, shop.id, a))).status_code == 200
    r = await client.put(
        f"/api/streams/{shop.id}/commission",
        json={"level1_bps": 1000, "level2_bps": 250},
        headers=shop.auth,
    )
    assert r.status_code == 200
    res = await client.post(
        f"/api/streams/{shop.id}/reservations",
        json={"sku": "tea", "qty": 3, "key": "one"},
        headers=c.auth,
    )
    order_id = (await pay(client, res.json()["id"], c)).json()["order_id"]
    # New rates apply to later sales only; the refund reverses at the sale's rates.
    await client.put(
        f"/api/streams/{shop.id}/commission",
        json={"level1_bps": 3000, "level2_bps": 0},
        headers=shop.auth,
    )
    r = await client.post(f"/api/orders/{order_id}/refund", headers=shop.auth)
    assert r.status_code == 200
    # An unreferred buyer earns nobody anything.
    res = await client.post(
        f"/api/streams/{shop.id}/reservations",
        json={"sku": "tea", "qty": 1, "key": "two"},
        headers=a.auth,
    )
    assert (await pay(client, res.json()["id"], a)).status_code == 200
    await settled(redis, engine, shop.id, SERVICE_DRAIN_GROUP)
    lines = sorted(
        (ln["kind"], ln["level"], ln["viewer_id"], ln["amount_cents"])
        for ln in await ledger(engine, shop.id)
    )
    assert lines == sorted(
        [
            ("sale", 1, b.id, 2997 * 1000 // 10_000),
            ("sale", 2, a.id, 2997 * 250 // 10_000),
            ("reversal", 1, b.id, -(2997 * 1000 // 10_000)),
            ("reversal", 2, a.id, -(2997 * 250 // 10_000)),
        ]
    )
    mine = (await client.get("/api/me/commissions", headers=b.auth)).json()
    assert mine["total_cents"] == 0 and len(mine["lines"]) == 2
    assert set(mine["lines"][0]) >= {"order_id", "level", "amount_cents", "stream_id", "ts"}
    report = (await client.get(f"/api/streams/{shop.id}/referrals", headers=shop.auth)).json()
    rows = {r["viewer_id"]: r for r in report["referrers"]}
    assert rows[b.id] == {
        "viewer_id": b.id,
        "referred": 1,
        "orders": 0,
        "gmv_cents": 0,
        "commission_cents": 0,
    }
    assert rows[a.id]["referred"] == 1
    assert (
        await client.get(f"/api/streams/{shop.id}/referrals", headers=c.auth)
    ).status_code == 403
    assert (await client.get("/api/me/commissions")).status_code == 401


@pytest.fixture
async def orders_engine_for_service(sqlite_url: str):  # type: ignore[no-untyped-def]
    """The session service's own order store (SQLite)."""
    from orders.db import make_engine

    engine = make_engine(sqlite_url)
    yield engine
    await engine.dispose()
