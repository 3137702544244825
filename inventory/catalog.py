"""Products of a stream and their stock, kept in Redis."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from inventory import keys
from inventory.guard import Guard
from inventory.scripts import LUA_DIR
from rediskit.lua import Script

# Not behind the shared head: it takes keys of its own and a guard that lets a brand-new
# stream (no guard set yet) list its first products.
ADD_PRODUCT = Script(LUA_DIR, "add_product.lua")


class ProductExists(Exception):
    pass


class TooManyProducts(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Product:
    stream_id: str
    sku: str
    title: str
    price_cents: int
    stock: int
    per_user_limit: int | None
    created_at: int

    def to_json(self, stock_left: int | None = None) -> dict[str, Any]:
        out = asdict(self)
        out["stock_left"] = self.stock if stock_left is None else stock_left
        return out


class Catalog:
    def __init__(
        self, redis: Redis, guard: Guard | None = None, max_products: int = 500
    ) -> None:
        self.redis = redis
        self.guard = guard or Guard()
        self.max_products = max_products
        self._add = ADD_PRODUCT.register(redis)

    async def add(self, product: Product) -> None:
        sid = product.stream_id
        payload = orjson.dumps(asdict(product))
        added = await self.guard(
            sid,
            lambda: self._add(
                keys=[keys.products(sid), keys.stock(sid), keys.events(sid), keys.checked(sid)],
                args=[product.sku, payload, product.stock, sid, self.max_products],
            ),
        )
        if int(added) == -1:
            raise TooManyProducts(product.sku)
        if not int(added):
            raise ProductExists(product.sku)

    async def get(self, sid: str, sku: str) -> Product | None:
        raw = await self.redis.hget(keys.products(sid), sku)
        return Product(**orjson.loads(raw)) if raw else None

    async def list_with_stock(self, sid: str) -> list[dict[str, Any]]:
        """Every product of the stream with its `stock_left`, oldest first."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.products(sid))
            pipe.hgetall(keys.stock(sid))
            raw_products, raw_stock = await pipe.execute()
        out = []
        for sku, raw in raw_products.items():
            product = Product(**orjson.loads(raw))
            left = raw_stock.get(sku)
            out.append(product.to_json(int(left) if left is not None else 0))
        out.sort(key=lambda p: (p["created_at"], p["sku"]))
        return out
