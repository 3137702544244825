"""Refunds of paid orders (the host's call): the order becomes `refunded` and its unit
returns to stock once, in one Lua script (lua/refund.lua); refunding again is a no-op.
A group member who paid while the group is still open drops out of it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from domain.errors import DomainError
from inventory import keys
from inventory.guard import Guard
from inventory.reservations import stream_of
from inventory.scripts import load, run
from rediskit.codec import text

REFUND = load("refund.lua")

_ORDER_ID = re.compile(r"^o_([0-9a-f]{32})$")


class RefundError(DomainError):
    details = {
        "not_found": "no such order in this stream",
        "not_paid": "only a paid order can be refunded",
    }

    def __init__(self, code: str, reservation: dict[str, Any] | None = None) -> None:
        super().__init__(code)
        self.reservation = reservation


@dataclass
class Refund:
    reservation: dict[str, Any]
    refunded_now: bool
    groups_changed: list[str] = field(default_factory=list)


def reservation_of(order_id: str) -> str | None:
    m = _ORDER_ID.match(order_id)
    return f"r_{m.group(1)}" if m else None


class Refunds:
    def __init__(self, redis: Redis, guard: Guard | None = None) -> None:
        self.redis = redis
        self.guard = guard or Guard()
        self._refund = REFUND.register(redis)

    async def refund(self, order_id: str, sid: str) -> Refund:
        """Refund `order_id` of stream `sid` (another stream's order is not_found)."""
        rid = reservation_of(order_id)
        if rid is None or stream_of(rid) != sid:
            raise RefundError("not_found")
        outcome, raw, changed = await self.guard(
            sid, lambda: run(self._refund, keys=keys.script_keys(sid), args=[rid])
        )
        outcome = text(outcome)
        r = orjson.loads(text(raw)) if text(raw) else None
        if outcome in ("refunded_now", "refunded"):
            assert r is not None
            # The sweeper purges it from Redis after LIVE_SETTLED_RETENTION_S.
            await self.redis.zadd(keys.SWEEP_SETTLED, {sid: int(r["refunded_at"])}, lt=True)
            return Refund(r, outcome == "refunded_now", orjson.loads(text(changed)))
        raise RefundError(outcome, r)
