"""The group-buy and commission part of `live reconcile`: Redis groups against their
rows and members, and the ledger against the orders that earn commission."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from orders.ledger import ledger_lines
from orders.models import GROUP_PENDING, PAID, REFUNDED, RESERVED
from orders.social_models import FAILED, FORMED, OPEN, CommissionLine, GroupRow
from rediskit.codec import text

# Member order statuses each group status allows (a formed group's paid member may
# have been refunded by the host since).
MEMBER_STATUSES = {
    OPEN: {RESERVED, GROUP_PENDING},
    FORMED: {PAID, REFUNDED},
    FAILED: {"expired", REFUNDED, "cancelled"},
}


async def reconcile_groups(
    redis: Redis, engine: AsyncEngine, sid: str, reservations: dict[str, dict[str, Any]]
) -> list[str]:
    diff: list[str] = []
    raw = await redis.hgetall(inv_keys.groups(sid))
    groups = {text(k): orjson.loads(v) for k, v in raw.items()}
    async with engine.connect() as conn:
        rows = (
            await conn.execute(select(GroupRow.__table__).where(GroupRow.stream_id == sid))
        ).all()
        ledger = (
            await conn.execute(
                select(CommissionLine.order_id, func.sum(CommissionLine.amount_cents))
                .where(CommissionLine.stream_id == sid)
                .group_by(CommissionLine.order_id)
            )
        ).all()
    sql_groups = {r.id: r._asdict() for r in rows}
    for gid in sorted(groups.keys() - sql_groups.keys()):
        diff.append(f"group {gid}: {groups[gid]['status']} in Redis, missing in SQL")
    for gid in sorted(sql_groups.keys() - groups.keys()):
        diff.append(f"group {gid}: {sql_groups[gid]['status']} in SQL, unknown to Redis")
    for gid, g in sorted(groups.items()):
        if gid in sql_groups and sql_groups[gid]["status"] != g["status"]:
            diff.append(
                f"group {gid}: status {g['status']!r} in Redis, "
                f"{sql_groups[gid]['status']!r} in SQL"
            )
        diff.extend(_check_group(g, reservations))
    # Orders that name a group must name one that exists.
    for rid, r in sorted(reservations.items()):
        if r.get("group_id") and r["group_id"] not in groups:
            diff.append(f"{rid}: in group {r['group_id']}, which Redis does not know")
    # The ledger: what each order's events say it earned, against SQL's lines.
    expected: dict[str, int] = defaultdict(int)
    for r in reservations.values():
        for line in ledger_lines(str(r.get("status")), r):
            expected[line["order_id"]] += line["amount_cents"]
    written = {oid: int(total) for oid, total in ledger}
    for oid in sorted(expected.keys() | written.keys()):
        if expected.get(oid, 0) != written.get(oid, 0):
            diff.append(
                f"order {oid}: commission {expected.get(oid, 0)} by Redis, "
                f"{written.get(oid, 0)} in the SQL ledger"
            )
    return diff


def _check_group(g: dict[str, Any], reservations: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    gid, roster = g["id"], g.get("roster") or {}
    if len(roster) > g["group_size"] or g["members"] != len(roster):
        out.append(
            f"group {gid}: {len(roster)} members of {g['group_size']} ({g['members']} counted)"
        )
    if g["status"] == FORMED and len(roster) != g["group_size"]:
        out.append(f"group {gid}: formed with {len(roster)} of {g['group_size']} members")
    paid = 0
    for viewer, m in roster.items():
        r = reservations.get(m["rid"])
        if r is None:
            out.append(f"group {gid}: member {viewer}'s reservation {m['rid']} is missing")
            continue
        if r.get("group_id") != gid or r.get("viewer_id") != viewer:
            out.append(f"group {gid}: reservation {m['rid']} is not {viewer}'s in this group")
        if r.get("status") not in MEMBER_STATUSES.get(g["status"], set()):
            out.append(f"group {gid} ({g['status']}): member order {m['rid']} is {r.get('status')}")
        if g["status"] == OPEN and (r.get("status") == GROUP_PENDING) != (m.get("paid") == 1):
            out.append(f"group {gid}: member {viewer} paid flag disagrees with its order")
        paid += int(m.get("paid") == 1)
    if g["status"] == OPEN and paid != g["paid"]:
        out.append(f"group {gid}: {g['paid']} paid counted, {paid} in the roster")
    return out
