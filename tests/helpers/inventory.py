"""Straight at the inventory's scripts: a stream id, a product, its stock and events."""

from __future__ import annotations

import secrets
import time

import orjson
from redis.asyncio import Redis

from inventory import keys
from inventory.catalog import Catalog, Product


def new_sid() -> str:
    return f"s_{secrets.token_hex(8)}"


async def add(redis: Redis, sid: str, sku: str, stock: int, limit: int | None = None) -> None:
    await Catalog(redis).add(Product(sid, sku, "Scarf", 1500, stock, limit, int(time.time())))


async def stock_of(redis: Redis, sid: str, sku: str) -> int:
    return int(await redis.hget(keys.stock(sid), sku) or 0)


async def events_of(redis: Redis, sid: str) -> list[tuple[str, dict]]:
    entries = await redis.xrange(keys.events(sid))
    return [(f["type"], orjson.loads(f["data"])) for _, f in entries]


async def evalsha_calls(redis: Redis) -> int:
    """How many script runs this Redis has served so far."""
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
