"""Group buys over HTTP and the websocket: the contract's answers and error codes,
the broadcasts, members dropping out, the host closing an offer, the stream ending."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import orjson
import pytest
import websockets
from conftest import ServiceProcess, service_env
from redis.asyncio import Redis
from social_support import (
    drain_group,
    group_buy,
    join,
    open_group,
    open_shop,
    pay,
    redis_groups,
    settled,
    stock_balance,
    viewers,
)
from sqlalchemy.ext.asyncio import AsyncEngine

pytestmark = pytest.mark.timeout(120)


async def ws_connect(svc: ServiceProcess, sid: str, token: str | None = None) -> Any:
    q = f"?token={token}" if token else ""
    return await websockets.connect(f"{svc.ws_url}/ws/streams/{sid}{q}", open_timeout=10)


async def next_of(ws: Any, *types: str, wait: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        msg = orjson.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if msg["type"] in types:
            return msg


async def test_contract_answers_and_errors(
    service: ServiceProcess, client: httpx.AsyncClient, redis: Redis
) -> None:
    shop = await open_shop(client, stock=5, per_user_limit=1)
    bad = [
        {"sku": "tea", "group_price_cents": 1, "group_size": 1, "window_s": 60},
        {"sku": "tea", "group_price_cents": 1, "group_size": 51, "window_s": 60},
        {"sku": "tea", "group_price_cents": 1, "group_size": 2, "window_s": 9},
        {"sku": "tea", "group_price_cents": 1, "group_size": 2, "window_s": 86401},
        {"sku": "tea", "group_price_cents": -1, "group_size": 2, "window_s": 60},
    ]
    for body in bad:
        r = await client.post(f"/api/streams/{shop.id}/group-buys", json=body, headers=shop.auth)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_body"), body
    r = await client.post(
        f"/api/streams/{shop.id}/group-buys",
        json={"sku": "nope", "group_price_cents": 1, "group_size": 2, "window_s": 60},
        headers=shop.auth,
    )
    assert (r.status_code, r.json()["error"]) == (404, "unknown_sku")
    gb = await group_buy(client, shop, size=3, stock=4)
    assert {k: gb[k] for k in ("sku", "group_price_cents", "group_size", "window_s", "status")} == {
        "sku": "tea",
        "group_price_cents": 700,
        "group_size": 3,
        "window_s": 60,
        "status": "active",
    }
    v = await viewers(client, 7)
    # A viewer token is needed to open; a host token is 403, none is 401.
    r = await client.post(
        f"/api/group-buys/{gb['id']}/groups", json={"key": "k"}, headers=shop.auth
    )
    assert r.status_code == 403
    r = await client.post(f"/api/group-buys/{gb['id']}/groups", json={"key": "k"})
    assert r.status_code == 401
    opened = await open_group(client, gb["id"], v[0])
    assert opened.status_code == 201, opened.text
    g = opened.json()
    assert (g["members"], g["needed"], g["status"]) == (1, 2, "open")
    assert g["reservation"]["price_cents"] == 700 and g["reservation"]["qty"] == 1
    assert g["reservation"]["status"] == "reserved"
    again = await open_group(client, gb["id"], v[0])
    assert again.status_code == 200 and again.json()["group_id"] == g["group_id"]
    assert (await join(client, g["group_id"], v[0], key="other")).json()[
        "error"
    ] == "already_member"
    r = await join(client, g["share_code"].lower(), v[1])
    assert r.status_code == 201 and r.json()["needed"] == 1
    # per_user_limit 1: v[1] holds a unit already, a second group is over it.
    r2 = await open_group(client, gb["id"], v[1], key="second")
    assert (r2.status_code, r2.json()["error"]) == (409, "limit_exceeded")
    assert (await join(client, g["share_code"], v[2])).status_code == 201
    assert (await join(client, g["share_code"], v[3])).json()["error"] == "group_full"
    # The offer's cap of 4 units: a second group takes the 4th, then sold_out.
    g2 = (await open_group(client, gb["id"], v[3])).json()
    r = await join(client, g2["group_id"], v[4])
    assert (r.status_code, r.json()["error"]) == (409, "sold_out")
    assert (await join(client, "NOSUCHCD", v[4])).status_code == 404
    assert (await join(client, "g_" + "0" * 32, v[4])).status_code == 404
    r = await client.get(f"/api/groups/{g['share_code']}")
    assert r.status_code == 200
    assert set(r.json()) >= {
        "group_id",
        "group_buy_id",
        "sku",
        "members",
        "paid",
        "needed",
        "expires_at",
        "status",
    }
    # The host closes the offer: no new groups, the open ones go on.
    r = await client.delete(f"/api/group-buys/{gb['id']}", headers=v[0].auth)
    assert r.status_code == 403
    r = await client.delete(f"/api/group-buys/{gb['id']}", headers=shop.auth)
    assert r.status_code == 200 and r.json()["status"] == "closed"
    assert (
        await client.delete(f"/api/group-buys/{gb['id']}", headers=shop.auth)
    ).status_code == 200
    r = await open_group(client, gb["id"], v[5])
    assert (r.status_code, r.json()["error"]) == (409, "group_closed")
    # A member's cancelled hold reopens its slot while the window runs.
    r = await client.delete(f"/api/reservations/{g['reservation']['id']}", headers=v[0].auth)
    assert r.status_code == 200
    state = (await client.get(f"/api/groups/{g['group_id']}")).json()
    assert (state["members"], state["needed"]) == (2, 1)
    r = await join(client, g["group_id"], v[0], key="back")
    assert r.status_code == 201
    assert await stock_balance(redis, shop) == (1, 4)


async def test_pay_form_refund_and_broadcasts(
    service: ServiceProcess, client: httpx.AsyncClient, redis: Redis
) -> None:
    shop = await open_shop(client, stock=10)
    watcher = await ws_connect(service, shop.id)
    try:
        await next_of(watcher, "hello")
        gb = await group_buy(client, shop, size=2)
        started = await next_of(watcher, "groupbuy.started")
        assert started["data"]["id"] == gb["id"]
        a, b = await viewers(client, 2)
        g = (await open_group(client, gb["id"], a)).json()
        progress = await next_of(watcher, "group.progress")
        assert progress["data"]["group_id"] == g["group_id"]
        j = (await join(client, g["share_code"], b)).json()
        p1 = await pay(client, g["reservation"]["id"], a)
        assert p1.json()["status"] == "group_pending" and p1.json()["order_id"].startswith("o_")
        assert (await pay(client, g["reservation"]["id"], a)).json()["status"] == "group_pending"
        p2 = await pay(client, j["reservation"]["id"], b)
        assert p2.status_code == 200 and p2.json()["status"] == "paid"
        formed = await next_of(watcher, "group.formed")
        assert formed["data"]["group_id"] == g["group_id"] and formed["data"]["paid"] == 2
        # The last progress message has the final counts (coalesced, newest wins).
        last = None
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                last = await next_of(watcher, "group.progress", wait=deadline - time.monotonic())
            except TimeoutError:
                break
            if last["data"]["status"] == "formed":
                break
        assert last is not None and last["data"]["needed"] == 0
        assert (await pay(client, g["reservation"]["id"], a)).json()["status"] == "paid"
        # The host refunds one member: once; again is a no-op; the unit is back.
        other = await open_shop(client, stock=1)
        r = await client.post(f"/api/orders/{p1.json()['order_id']}/refund", headers=other.auth)
        assert r.status_code == 403
        for _ in range(2):
            r = await client.post(f"/api/orders/{p1.json()['order_id']}/refund", headers=shop.auth)
            assert r.status_code == 200 and r.json()["status"] == "refunded"
        assert await stock_balance(redis, shop) == (9, 1)
        r = await client.post(f"/api/orders/o_{shop.id[2:]}{'0' * 16}/refund", headers=shop.auth)
        assert r.status_code == 404
        r = await client.post(f"/api/orders/o_{'0' * 32}/refund", headers=shop.auth)
        assert r.status_code == 403  # another stream's order
    finally:
        await watcher.close()


async def test_websocket_group_and_referral_messages(
    service: ServiceProcess, client: httpx.AsyncClient
) -> None:
    shop = await open_shop(client, stock=10)
    gb = await group_buy(client, shop, size=2)
    a, b = await viewers(client, 2)
    wa, wb = (
        await ws_connect(service, shop.id, a.token),
        await ws_connect(service, shop.id, b.token),
    )
    anon = await ws_connect(service, shop.id)
    try:
        for ws in (wa, wb, anon):
            await next_of(ws, "hello")
        await wa.send(json.dumps({"type": "group.open", "group_buy_id": gb["id"], "key": "w"}))
        got = await next_of(wa, "group", "error")
        assert got["type"] == "group" and got["seq"] is None, got
        assert got["data"]["members"] == 1 and got["data"]["reservation"]["status"] == "reserved"
        code = got["data"]["share_code"]
        await wb.send(json.dumps({"type": "group.join", "group": code, "key": "w"}))
        joined = await next_of(wb, "group", "error")
        assert joined["type"] == "group" and joined["data"]["needed"] == 0
        await wb.send(json.dumps({"type": "group.join", "group": code, "key": "w2"}))
        err = await next_of(wb, "error")
        assert err["data"]["code"] == "already_member"
        await wb.send(json.dumps({"type": "group.join", "key": "w3"}))
        assert (await next_of(wb, "error"))["data"]["code"] == "invalid_message"
        await anon.send(json.dumps({"type": "group.join", "group": code, "key": "x"}))
        assert (await next_of(anon, "error"))["data"]["code"] == "unauthorized"
        await wa.send(json.dumps({"type": "referral.link"}))
        link = await next_of(wa, "referral.link", "error")
        assert link["type"] == "referral.link" and link["data"]["url"].endswith(
            f"?ref={link['data']['code']}"
        )
        await wa.send(json.dumps({"type": "referral.link"}))
        assert (await next_of(wa, "referral.link"))["data"]["code"] == link["data"]["code"]
        await wb.send(json.dumps({"type": "referral.bind", "ref": link["data"]["code"]}))
        bound = await next_of(wb, "referral.bound", "error")
        assert bound["data"]["referrer_id"] == a.id
    finally:
        for ws in (wa, wb, anon):
            await ws.close()


async def test_unpaid_member_drops_out_and_stream_end_fails_groups(
    redis: Redis,
    redis_url: str,
    database_url: str,
    orders_engine: AsyncEngine,
    start_service: Any,
) -> None:
    group = drain_group()
    svc = start_service(
        service_env(
            redis_url,
            database_url,
            LIVE_RESERVATION_TTL_S="3",
            LIVE_LOG_LEVEL="warning",
            LIVE_DRAIN_GROUP=group,
        )
    )
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as c:
        shop = await open_shop(c, stock=10)
        gb = await group_buy(c, shop, size=3)
        a, b, d = await viewers(c, 3)
        g = (await open_group(c, gb["id"], a)).json()
        assert (await pay(c, g["reservation"]["id"], a)).json()["status"] == "group_pending"
        j = (await join(c, g["share_code"], b)).json()
        # b does not pay within the reservation TTL: it drops out, its slot reopens.
        deadline = time.monotonic() + 20
        while (await c.get(f"/api/groups/{g['group_id']}")).json()["members"] != 1:
            assert time.monotonic() < deadline, "the unpaid member did not drop out"
            await asyncio.sleep(0.1)
        r = await pay(c, j["reservation"]["id"], b)
        assert (r.status_code, r.json()["error"]) == (410, "expired")
        assert (await join(c, g["group_id"], d)).status_code == 201
        # The stream ends: its open groups fail now, the paid member is refunded.
        r = await c.post(f"/api/streams/{shop.id}/end", headers=shop.auth)
        assert r.status_code == 200
        state = (await c.get(f"/api/groups/{g['group_id']}")).json()
        assert state["status"] == "failed"
        assert await stock_balance(redis, shop) == (10, 0)
        await settled(redis, orders_engine, shop.id, group)
        stats = (await c.get(f"/api/streams/{shop.id}/stats", headers=shop.auth)).json()
        assert (stats["groups_opened"], stats["groups_formed"], stats["groups_failed"]) == (1, 0, 1)
        assert stats["refunded"] == 1 and stats["expired"] == 2
        assert (await redis_groups(redis, shop.id))[g["group_id"]]["status"] == "failed"
