"""Flash sales: a price and a stock cap for one sku for `duration_s`.

While a sale runs, the stock hash holds the sale's units left (what a viewer can buy
now) and the sku's other regular units wait in the held hash. The sale ends exactly once
(decided inside a Lua script by whichever process notices first) when its time is up,
its units are sold out, or the stream ends; then its unsold units and the held units go
back to regular stock at the product's price. A sale reservation cancelled or expired
after its sale ended returns its unit to regular stock.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from domain.errors import DomainError
from inventory import keys
from inventory.guard import Guard
from inventory.scripts import load, run
from rediskit.codec import now_ms, text

START_SALE = load("start_sale.lua")
END_SALE = load("end_sale.lua")


class SaleError(DomainError):
    details = {
        "unknown_sku": "no such product in this stream",
        "sale_active": "a flash sale of this sku is running already",
        "sold_out": "no stock left to put on sale",
    }

    def __init__(self, code: str, sale: dict[str, Any] | None = None) -> None:
        super().__init__(code)
        self.sale = sale


@dataclass
class Started:
    sale: dict[str, Any]
    ended_before: dict[str, Any] | None  # a previous sale of the sku found over


def sweep_member(sid: str, sku: str, sale_id: str) -> str:
    return f"{sid} {sku} {sale_id}"


class Sales:
    def __init__(self, redis: Redis, guard: Guard | None = None) -> None:
        self.redis = redis
        self.guard = guard or Guard()
        self._start = START_SALE.register(redis)
        self._end = END_SALE.register(redis)

    async def start(
        self,
        sid: str,
        sku: str,
        price_cents: int,
        stock: int,
        per_user_limit: int | None,
        duration_s: int,
    ) -> Started:
        sale_id = f"sale_{secrets.token_hex(8)}"
        args = [
            sku,
            sale_id,
            price_cents,
            stock,
            "" if per_user_limit is None else per_user_limit,
            duration_s * 1000,
            sid,
        ]
        outcome, raw, ended = await self.guard(
            sid, lambda: run(self._start, keys=keys.script_keys(sid), args=args)
        )
        outcome, raw, ended = text(outcome), text(raw), text(ended)
        if outcome != "started":
            raise SaleError(outcome, orjson.loads(raw) if raw else None)
        sale = orjson.loads(raw)
        await self.redis.zadd(keys.SWEEP_SALES, {sweep_member(sid, sku, sale_id): sale["ends_at"]})
        return Started(sale, orjson.loads(ended) if ended else None)

    async def end(
        self, sid: str, sku: str, sale_id: str = "", reason: str = "time", now: bool = False
    ) -> dict[str, Any] | None:
        """End the sale if it is (still) the running one and its time is up, or at once
        with `now`; None when another process ended it or nothing was running."""
        args = [sku, sale_id, reason, "1" if now else "0"]
        raw = text(
            await self.guard(sid, lambda: run(self._end, keys=keys.script_keys(sid), args=args))
        )
        return orjson.loads(raw) if raw else None

    async def end_all(self, sid: str, reason: str = "stream_ended") -> list[dict[str, Any]]:
        """End every running sale of the stream now (the stream ended)."""
        ended = []
        for sku in await self.redis.hkeys(keys.sales(sid)):
            sale = await self.end(sid, text(sku), reason=reason, now=True)
            if sale is not None:
                ended.append(sale)
        return ended

    async def active(self, sid: str) -> list[dict[str, Any]]:
        """The stream's running sales with their `stock_left`, earliest end first.

        A sale whose time is up but that no process has ended yet is left out.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.sales(sid))
            pipe.hgetall(keys.stock(sid))
            raw_sales, stock = await pipe.execute()
        now = now_ms()
        out = []
        for sku, raw in raw_sales.items():
            sale = orjson.loads(raw)
            if sale["ends_at"] <= now:
                continue
            sale["stock_left"] = int(stock.get(sku, 0))
            out.append(sale)
        out.sort(key=lambda s: (s["ends_at"], s["sku"]))
        return out
