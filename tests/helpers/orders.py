"""Feeding the order drainer contract-shaped events (docs/EVENTS.md) and reading SQL."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from inventory.streams import ENDED_STREAMS
from orders.drain import Drainer
from orders.drain_settings import DrainSettings
from orders.models import OrderRow

TYPES = {
    "reserved": "reservation.created",
    "paid": "reservation.confirmed",
    "cancelled": "reservation.cancelled",
    "expired": "reservation.expired",
}


def new_sid() -> str:
    return f"s_{secrets.token_hex(8)}"


def new_rid(sid: str) -> str:
    return f"r_{sid[2:]}{secrets.token_hex(8)}"


def reservation(sid: str, rid: str, status: str, *, qty: int = 1, created_at: int = 0) -> dict:
    now = created_at or int(time.time() * 1000)
    r: dict[str, Any] = {
        "id": rid,
        "stream_id": sid,
        "viewer_id": "v_" + rid[-8:],
        "sku": "mug",
        "qty": qty,
        "price_cents": 1250,
        "sale_id": None,
        "key": "k-" + rid[-6:],
        "created_at": now,
        "expires_at": now + 600_000,
        "status": status,
    }
    if status == "paid":
        r.update(order_id="o_" + rid[2:], paid_at=now + 5)
    elif status == "cancelled":
        r["cancelled_at"] = now + 5
    elif status == "expired":
        r["expired_at"] = now + 600_000
    return r


async def add_stream(redis: Redis, sid: str, stock: int = 1_000_000) -> None:
    now = int(time.time() * 1000)
    await emit(
        redis,
        sid,
        "stream.created",
        {
            "id": sid,
            "title": "t",
            "host_name": "Ann",
            "status": "live",
            "pinned_sku": None,
            "created_at": now,
            "ended_at": None,
        },
    )
    await emit(
        redis,
        sid,
        "product.added",
        {
            "stream_id": sid,
            "sku": "mug",
            "title": "Mug",
            "price_cents": 1250,
            "stock": stock,
            "per_user_limit": None,
            "created_at": now,
        },
    )
    await redis.sadd(inv_keys.STREAMS, sid)


async def emit(redis: Redis, sid: str, type_: str, data: dict) -> None:
    await redis.xadd(inv_keys.events(sid), {"type": type_, "data": orjson.dumps(data)})


async def emit_status(redis: Redis, sid: str, rid: str, status: str, **kw: Any) -> None:
    await emit(redis, sid, TYPES[status], reservation(sid, rid, status, **kw))


async def sql_orders(engine: AsyncEngine, sid: str) -> dict[str, tuple]:
    t = OrderRow.__table__
    async with engine.connect() as conn:
        rows = (await conn.execute(select(t).where(t.c.stream_id == sid))).all()
    return {r.id: tuple(r) for r in rows}


async def waiting(redis: Redis, group: str, sids: list[str]) -> int:
    """Events of these streams not yet in SQL for `group` (all of them if the group
    does not exist yet)."""
    total = 0
    for sid in sids:
        key = inv_keys.events(sid)
        mine = [g for g in await redis.xinfo_groups(key) if g["name"] == group]
        if not mine:
            total += await redis.xlen(key)
        for g in mine:
            total += int(g["pending"]) + int(g["lag"] or 0)
    return total


async def drain_all(drainer: Drainer, sids: list[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        await drainer.step()
        if await waiting(drainer.redis, drainer.group, sids) == 0:
            return
        assert time.monotonic() < deadline, "drainer did not catch up"


def settings_for(sids: list[str], **kw: Any) -> DrainSettings:
    # A group of its own and only this test's streams: the machine's Redis is shared.
    return DrainSettings(
        group=kw.pop("group", f"orders_t{secrets.token_hex(4)}"),
        only=frozenset(sids),
        block_ms=kw.pop("block_ms", 20),
        refresh_ms=kw.pop("refresh_ms", 10),
        **kw,
    )


def reconcile(env: dict[str, str], sid: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`live reconcile SID --wait 10` as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "live.cli", "reconcile", sid, "--wait", "10"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def ids_of(redis: Redis, key: str) -> list[str]:
    """The entry ids of a Redis stream, oldest first."""
    return [entry_id for entry_id, _ in await redis.xrange(key)]


async def groups_of(redis: Redis, key: str) -> object:
    """What an assertion about trimming or retiring should show: every group's state."""
    try:
        return await redis.xinfo_groups(key)
    except Exception as exc:
        return repr(exc)


async def keys_without_ttl(redis: Redis, sid: str) -> list[str]:
    """Keys of stream `sid` that would live forever."""
    left = []
    async for k in redis.scan_iter(match=f"*{{{sid}}}*", count=1000):
        if await redis.pttl(k) == -1:
            left.append(k)
    return left


async def out_of_the_way(redis: Redis, sid: str) -> None:
    """Out of the shared registry, which every unsharded drainer of the other tests walks
    (from id 0 with a group of their own); still in the ended registry, so the
    deployment-wide pass deletes its keys a week from now."""
    assert await redis.zscore(ENDED_STREAMS, sid) is not None
    await redis.srem(inv_keys.STREAMS, sid)
