"""Rebuilding a stream's Redis stock from the order store (SQL).

Used when Redis may be behind SQL — the freshness guard (inventory/guard.py) refused a
change because the stream was not yet checked on this Redis server — and on demand by
`live reconcile STREAM_ID --repair`.

SQL is read first, then one Lua script (inventory/lua/rebuild.lua) merges it into what
Redis holds and recomputes the stock atomically. While a stream is unchecked every
inventory script refuses to change it, so nothing moves between the two steps; the
durable confirm cannot add a paid row meanwhile either (its Redis step is refused).
Only the rows that differ are sent: SQL rows Redis lacks, and terminal SQL statuses
Redis holds otherwise (a paid order whose confirmation Redis lost in a rollback).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from inventory.rebuild import Rebuilder, checked_here
from orders.models import RESERVED, OrderRow, ProductRow
from rediskit.codec import text

# Reservation fields that are only present once the reservation reached that status.
_STATUS_FIELDS = ("order_id", "paid_at", "cancelled_at", "expired_at")


@dataclass
class Rebuilt:
    stream_id: str
    fresh: bool = False  # checked on this Redis server already; nothing was done
    gone: bool = False  # no Redis state (retired): nothing to rebuild
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        r = self.report
        return any(r.get(k) for k in ("products", "restored", "settled", "stock", "oversold"))

    def lines(self) -> list[str]:
        r = self.report
        out: list[str] = []
        for sku in r.get("products", []):
            out.append(f"product {sku}: restored from SQL")
        for rid, status in r.get("restored", []):
            out.append(f"{rid}: restored from SQL as {status}")
        for rid, before, after in r.get("settled", []):
            out.append(f"{rid}: {before} in Redis, now {after} as in SQL")
        for rid, status in r.get("kept_paid", []):
            out.append(f"{rid}: paid in Redis, {status} in SQL: kept paid (units stay sold)")
        for sku, stock, held, new_stock, new_held in r.get("stock", []):
            out.append(f"sku {sku}: stock {stock} -> {new_stock}, held {held} -> {new_held}")
        for sku, units in r.get("oversold", []):
            out.append(f"sku {sku}: {units} unit(s) more reserved/paid than the stock (oversold)")
        return out

    def summary(self) -> str:
        return "; ".join(self.lines()) or "nothing to change"


def _reservation(row: dict[str, Any]) -> dict[str, Any]:
    """An SQL order row in the shape Redis keeps reservations in (docs/EVENTS.md)."""
    out = {k: v for k, v in row.items() if k not in _STATUS_FIELDS or v is not None}
    return out


async def rebuild_stream(
    redis: Redis, engine: AsyncEngine, sid: str, force: bool = False
) -> Rebuilt:
    """Rebuild `sid`'s stock from SQL merged with Redis, and mark it checked on this
    Redis server. Without `force` a stream checked already is left alone."""
    if not force and await checked_here(redis, sid):
        return Rebuilt(sid, fresh=True)
    async with engine.connect() as conn:
        rows = [
            r._asdict()
            for r in await conn.execute(
                select(OrderRow.__table__).where(OrderRow.stream_id == sid)
            )
        ]
        products = [
            r._asdict()
            for r in await conn.execute(
                select(ProductRow.__table__).where(ProductRow.stream_id == sid)
            )
        ]
    held = await redis.hgetall(inv_keys.reservations(sid))
    statuses = {text(k): orjson.loads(v).get("status") for k, v in held.items()}
    have_products = {text(k) for k in await redis.hkeys(inv_keys.products(sid))}
    differing = [
        _reservation(r)
        for r in rows
        if r["id"] not in statuses
        or (r["status"] != RESERVED and statuses[r["id"]] != r["status"])
    ]
    missing = [p for p in products if p["sku"] not in have_products]
    report = await Rebuilder(redis).run(sid, differing, missing, force=force)
    if report.get("fresh") or report.get("gone"):
        return Rebuilt(sid, fresh=bool(report.get("fresh")), gone=bool(report.get("gone")))
    return Rebuilt(sid, report=report)


async def replay_dead_letters(
    redis: Redis, engine: AsyncEngine, sid: str, group: str | None = None
) -> list[str]:
    """Apply each of the stream's dead letters (of `group`'s drainers, when given:
    another group drains into another store) alone again; the ones SQL now takes
    (the cause was fixed: a migration, a corrected value) leave the dead letters.
    Returns a line per dead letter saying what happened."""
    from orders import deadletter
    from orders.apply import prepare
    from orders.store import apply_batch

    lines: list[str] = []
    replayed: list[str] = []
    for d in await deadletter.listed(redis, sid, group=group):
        entry = (inv_keys.events(sid), d["entry"], {"type": d["type"], "data": d["data"]})
        batch = prepare([entry])
        if batch.bad:
            lines.append(f"dead letter {d['id']}: still unreadable ({batch.bad[0][2]})")
            continue
        try:
            await apply_batch(engine, batch)
        except Exception as exc:
            first = (str(exc).splitlines() or [""])[0]
            lines.append(f"dead letter {d['id']}: SQL still refuses it ({first})")
            continue
        replayed.append(d["id"])
        lines.append(f"dead letter {d['id']}: {d['type']} applied to SQL, removed")
    await deadletter.remove(redis, sid, replayed)
    return lines
