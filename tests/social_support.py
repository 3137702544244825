"""Helpers of the group-buy and referral tests: a stream with a product, viewers,
group requests over HTTP, and the checks every test ends with (Redis vs SQL)."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from orders.models import HOLDING, OrderRow
from orders.reconcile import reconcile
from orders.social_models import CommissionLine, GroupRow


@dataclass
class Viewer:
    id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Shop:
    """A live stream with one product, as its host sees it."""

    id: str
    host_token: str
    sku: str
    stock: int

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.host_token}"}


async def open_shop(
    c: httpx.AsyncClient, stock: int, price_cents: int = 1000, per_user_limit: int | None = None
) -> Shop:
    r = await c.post("/api/streams", json={"title": "group drop", "host_name": "Ann"})
    assert r.status_code == 201, r.text
    s = r.json()
    product: dict[str, Any] = {
        "sku": "tea",
        "title": "Tea",
        "price_cents": price_cents,
        "stock": stock,
    }
    if per_user_limit is not None:
        product["per_user_limit"] = per_user_limit
    shop = Shop(s["id"], s["host_token"], "tea", stock)
    r = await c.post(f"/api/streams/{shop.id}/products", json=product, headers=shop.auth)
    assert r.status_code == 201, r.text
    return shop


async def viewers(c: httpx.AsyncClient, n: int, ref: str | None = None) -> list[Viewer]:
    async def one(i: int) -> Viewer:
        body: dict[str, Any] = {"name": f"v{i}"}
        if ref:
            body["ref"] = ref
        r = await c.post("/api/viewers", json=body)
        assert r.status_code == 201, r.text
        return Viewer(r.json()["viewer_id"], r.json()["token"])

    out: list[Viewer] = []
    for start in range(0, n, 50):  # bounded concurrency for sign-ups
        out += await asyncio.gather(*(one(i) for i in range(start, min(n, start + 50))))
    return out


async def group_buy(
    c: httpx.AsyncClient,
    shop: Shop,
    size: int,
    window_s: int = 60,
    price: int = 700,
    stock: int | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sku": shop.sku,
        "group_price_cents": price,
        "group_size": size,
        "window_s": window_s,
    }
    if stock is not None:
        body["stock"] = stock
    r = await c.post(f"/api/streams/{shop.id}/group-buys", json=body, headers=shop.auth)
    assert r.status_code == 201, r.text
    return r.json()


async def open_group(c: httpx.AsyncClient, gbid: str, v: Viewer, key: str = "k") -> httpx.Response:
    return await c.post(f"/api/group-buys/{gbid}/groups", json={"key": key}, headers=v.auth)


async def join(c: httpx.AsyncClient, ref: str, v: Viewer, key: str = "k") -> httpx.Response:
    return await c.post(f"/api/groups/{ref}/join", json={"key": key}, headers=v.auth)


async def pay(c: httpx.AsyncClient, rid: str, v: Viewer) -> httpx.Response:
    return await c.post(f"/api/reservations/{rid}/confirm", headers=v.auth)


async def redis_groups(redis: Redis, sid: str) -> dict[str, dict[str, Any]]:
    return {k: orjson.loads(v) for k, v in (await redis.hgetall(inv_keys.groups(sid))).items()}


async def redis_reservations(redis: Redis, sid: str) -> dict[str, dict[str, Any]]:
    raw = await redis.hgetall(inv_keys.reservations(sid))
    return {k: orjson.loads(v) for k, v in raw.items()}


async def stock_balance(redis: Redis, shop: Shop) -> tuple[int, int]:
    """(units left + held aside, units of open holds and paid orders) in Redis."""
    left = int(await redis.hget(inv_keys.stock(shop.id), shop.sku) or 0)
    aside = int(await redis.hget(inv_keys.held(shop.id), shop.sku) or 0)
    taken = sum(
        r["qty"]
        for r in (await redis_reservations(redis, shop.id)).values()
        if r["status"] in HOLDING
    )
    return left + aside, taken


def drain_group() -> str:
    """A consumer group of the test's own: on a shared Redis another service's drainer
    (the session's, on another database) would otherwise take some of its events."""
    return f"orders_s{secrets.token_hex(4)}"


async def settled(
    redis: Redis, engine: AsyncEngine, sid: str, group: str = "orders", timeout_s: float = 60
) -> None:
    """Wait until the drainer caught up and `live reconcile` agrees (fails otherwise)."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = await reconcile(redis, engine, sid, wait_s=min(10.0, timeout_s), group=group)
        if report.agree and not report.waiting_events:
            return
        assert time.monotonic() < deadline, report.render()
        await asyncio.sleep(0.2)  # the drainer applies a batch, then acknowledges it


async def sql_groups(engine: AsyncEngine, sid: str) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(GroupRow.id, GroupRow.status).where(GroupRow.stream_id == sid)
            )
        ).all()
    return {gid: status for gid, status in rows}


async def sql_orders(engine: AsyncEngine, sid: str) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(OrderRow.__table__).where(OrderRow.stream_id == sid))
        ).all()
    return {r.id: r._asdict() for r in rows}


async def ledger(engine: AsyncEngine, sid: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(CommissionLine.__table__).where(CommissionLine.stream_id == sid)
            )
        ).all()
    return [r._asdict() for r in rows]


async def group_events(redis: Redis, sid: str) -> dict[str, list[str]]:
    """Group id -> the settling events (group.formed / group.failed) it had."""
    out: dict[str, list[str]] = {}
    for _, fields in await redis.xrange(inv_keys.events(sid)):
        if fields["type"] in ("group.formed", "group.failed"):
            out.setdefault(orjson.loads(fields["data"])["id"], []).append(fields["type"])
    return out
