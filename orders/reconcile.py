"""`live reconcile STREAM_ID`: does SQL agree with Redis about a stream's orders?

Compares, for one stream:
- every reservation in Redis (`inv:{sid}:res`, the record the viewers were answered
  from) with its SQL row: missing rows, rows Redis does not know, different status,
  order id, sku, qty or price;
- per sku, units reserved and paid in Redis vs SQL, and the Redis stock balance
  `product stock == stock left + units held aside for a sale + units reserved or paid`
  (a broken balance is an oversell or a unit given back twice).
The drainer may still be behind: reconcile first waits (bounded) for the stream's
events to be drained, and says so when they are not.

A stream whose Redis state was retired (ended, drained, past `LIVE_STREAM_RETENTION_S`:
orders/retention.py) has nothing left to compare: the report says so, with what SQL
keeps, rather than listing every SQL row as unknown to Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from inventory.rebuild import checked_here
from inventory.streams import meta_key
from orders import deadletter
from orders.drain_settings import GROUP
from orders.group_reconcile import reconcile_groups
from orders.models import HOLDING, STATUSES, OrderRow, ProductRow
from orders.queries import order_totals, stream_record
from rediskit.codec import text

COMPARED = ("status", "order_id", "sku", "qty", "price_cents", "viewer_id")


class UnknownStream(LookupError):
    pass


@dataclass
class Report:
    stream_id: str
    reservations_redis: int = 0
    rows_sql: int = 0
    waiting_events: int = 0
    differences: list[str] = field(default_factory=list)
    # Set when the stream's Redis state was retired: only SQL knows it now.
    retired_ended_at: int | None = None
    paid_sql: int = 0
    # Events the drainer set aside (orders/deadletter.py): SQL lacks them.
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    # The stream has not been checked against SQL on the running Redis server yet
    # (restart or failover since): its next change rebuilds it (inventory/guard.py).
    unchecked: bool = False

    @property
    def agree(self) -> bool:
        return not self.differences and not self.dead_letters

    def render(self) -> str:
        if self.retired_ended_at is not None:
            return (
                f"stream {self.stream_id}: Redis state retired (the stream ended at "
                f"{self.retired_ended_at} and was drained; LIVE_STREAM_RETENTION_S has "
                f"passed since)\n"
                f"SQL keeps {self.rows_sql} orders ({self.paid_sql} paid)\n"
                "OK: nothing to compare, SQL is the only record of this stream now"
            )
        lines = [
            f"stream {self.stream_id}: {self.reservations_redis} reservations in Redis, "
            f"{self.rows_sql} rows in SQL"
        ]
        if self.waiting_events:
            lines.append(f"note: {self.waiting_events} events not yet drained into SQL")
        if self.unchecked:
            lines.append(
                "note: not yet checked against SQL on this Redis server (it restarted or "
                "failed over since); its next change rebuilds it, --repair does it now"
            )
        if self.dead_letters:
            lines.append(
                f"DEAD LETTERS: {len(self.dead_letters)} event(s) the drainer set aside "
                "(SQL lacks them; fix the cause, then --repair replays them)"
            )
            lines.extend(
                f"  {d['id']}: {d['type']} (event {d['entry']}): {d['why']}"
                for d in self.dead_letters
            )
        if self.agree:
            lines.append("OK: Redis and SQL agree")
        else:
            lines.append(f"DIFFERENT: {len(self.differences)} difference(s)")
            lines.extend(f"  {d}" for d in self.differences)
        return "\n".join(lines)


async def waiting_events(redis: Redis, sid: str, group: str = GROUP) -> int:
    try:
        groups = await redis.xinfo_groups(inv_keys.events(sid))
    except Exception:
        return 0
    for g in groups:
        if text(g.get("name")) == group:
            return int(g.get("pending") or 0) + int(g.get("lag") or 0)
    return int(await redis.xlen(inv_keys.events(sid)))


def _load(raw: Any) -> dict[str, Any]:
    return orjson.loads(raw)


async def reconcile(
    redis: Redis, engine: AsyncEngine, sid: str, wait_s: float = 10.0, group: str = GROUP
) -> Report:
    if not await redis.exists(meta_key(sid), inv_keys.events(sid)):
        return await _retired(engine, sid)
    if not await redis.sismember(inv_keys.STREAMS, sid):
        raise UnknownStream(sid)
    report = Report(stream_id=sid)
    deadline = time.monotonic() + wait_s
    waiting = await waiting_events(redis, sid, group)
    while waiting and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # polling the drainer's progress, nothing to wait on
        waiting = await waiting_events(redis, sid, group)
    report.waiting_events = waiting

    async with redis.pipeline(transaction=True) as pipe:
        pipe.exists(inv_keys.events(sid))
        pipe.hgetall(inv_keys.products(sid))
        pipe.hgetall(inv_keys.stock(sid))
        pipe.hgetall(inv_keys.held(sid))
        pipe.hgetall(inv_keys.reservations(sid))
        pipe.hgetall(inv_keys.purged(sid))
        (
            events_exist, products, stock, held, reservations, purged_raw
        ) = await pipe.execute()
    if not events_exist:  # retired while we waited for the drainer
        return await _retired(engine, sid)
    report.unchecked = not await checked_here(redis, sid)
    await deadletter.recount(redis, sid)
    report.dead_letters = await deadletter.listed(redis, sid, group=group)
    redis_res = {
        str(k if isinstance(k, str) else k.decode()): _load(v) for k, v in reservations.items()
    }
    report.reservations_redis = len(redis_res)

    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(OrderRow.__table__).where(OrderRow.stream_id == sid))
        ).all()
        sql_products = {
            r.sku
            for r in (
                await conn.execute(select(ProductRow.sku).where(ProductRow.stream_id == sid))
            ).all()
        }
    sql_res = {r.id: r._asdict() for r in rows}
    report.rows_sql = len(sql_res)
    diff = report.differences

    for rid in sorted(redis_res.keys() - sql_res.keys()):
        r = redis_res[rid]
        diff.append(f"{rid}: {r.get('status')} in Redis, missing in SQL")
    # Cancelled, expired and refunded reservations past LIVE_SETTLED_RETENTION_S were
    # purged from Redis, which counted them: as many such SQL rows may be missing there.
    purged = {text(k): int(v) for k, v in purged_raw.items()}
    only_sql = sorted(sql_res.keys() - redis_res.keys())
    # Only reservations whose units went back to stock are purged; a holding one must
    # still be in Redis.
    open_only_sql = [rid for rid in only_sql if sql_res[rid]["status"] in HOLDING]
    for rid in open_only_sql:
        diff.append(f"{rid}: {sql_res[rid]['status']} in SQL, unknown to Redis")
    settled_only_sql = len(only_sql) - len(open_only_sql)
    if settled_only_sql != purged.get("rows", 0):
        diff.append(
            f"{settled_only_sql} settled reservations in SQL unknown to Redis, "
            f"{purged.get('rows', 0)} purged from Redis"
        )
        for rid in only_sql:
            if sql_res[rid]["status"] not in HOLDING:
                diff.append(f"{rid}: {sql_res[rid]['status']} in SQL, unknown to Redis")
    for rid in sorted(redis_res.keys() & sql_res.keys()):
        r, s = redis_res[rid], sql_res[rid]
        for col in COMPARED:
            if r.get(col) != s[col]:
                diff.append(f"{rid}: {col} is {r.get(col)!r} in Redis, {s[col]!r} in SQL")

    held_units: dict[str, dict[str, int]] = defaultdict(lambda: {"redis": 0, "sql": 0})
    for r in redis_res.values():
        if r.get("status") in HOLDING:
            held_units[str(r["sku"])]["redis"] += int(r["qty"])
    for name, units in purged.items():
        if name.startswith("paid:"):
            held_units[name[5:]]["redis"] += units
    for s in sql_res.values():
        if s["status"] in HOLDING:
            held_units[s["sku"]]["sql"] += s["qty"]

    for sku_raw, raw in sorted(products.items()):
        sku = sku_raw if isinstance(sku_raw, str) else sku_raw.decode()
        total = int(_load(raw)["stock"])
        left = int(stock.get(sku_raw) or 0)
        aside = int(held.get(sku_raw) or 0)
        taken = held_units[sku]["redis"]
        if total != left + aside + taken:
            diff.append(
                f"sku {sku}: stock {total} != left {left} + held {aside} "
                f"+ reserved/paid {taken} in Redis"
            )
        if sku not in sql_products:
            diff.append(f"sku {sku}: product in Redis, missing in SQL")
    for sku, units in sorted(held_units.items()):
        if units["redis"] != units["sql"]:
            diff.append(
                f"sku {sku}: {units['redis']} units reserved/paid in Redis, {units['sql']} in SQL"
            )
    diff.extend(await reconcile_groups(redis, engine, sid, redis_res))
    return report


async def _retired(engine: AsyncEngine, sid: str) -> Report:
    """The report on a stream Redis no longer holds: retired if SQL has its end."""
    record = await stream_record(engine, sid)
    if record is None or record["ended_at"] is None:
        raise UnknownStream(sid)
    totals = await order_totals(engine, sid)
    report = Report(stream_id=sid, retired_ended_at=int(record["ended_at"]))
    report.rows_sql = sum(totals[s] for s in STATUSES)
    report.paid_sql = totals["paid"]
    return report
