"""Reads of group buys and commissions for the API (SQL: what the drainer wrote)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from orders.social_models import (
    FAILED,
    FORMED,
    REVERSAL,
    SALE,
    CommissionLine,
    GroupRow,
    ReferralRow,
)

MAX_LINES = 500


async def group_totals(engine: AsyncEngine, sid: str) -> dict[str, int]:
    """`groups_opened`, `groups_formed`, `groups_failed`: running totals of the stream."""
    t = GroupRow.__table__
    stmt = select(t.c.status, func.count()).where(t.c.stream_id == sid).group_by(t.c.status)
    out = {"groups_opened": 0, "groups_formed": 0, "groups_failed": 0}
    async with engine.connect() as conn:
        for status, count in (await conn.execute(stmt)).all():
            out["groups_opened"] += int(count)
            if status == FORMED:
                out["groups_formed"] = int(count)
            elif status == FAILED:
                out["groups_failed"] = int(count)
    return out


async def viewer_commissions(
    engine: AsyncEngine, viewer_id: str, limit: int = MAX_LINES
) -> dict[str, Any]:
    """A viewer's ledger lines, newest first (at most `limit`), and the total of all."""
    t = CommissionLine.__table__
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(t)
                .where(t.c.viewer_id == viewer_id)
                .order_by(t.c.ts.desc(), t.c.id.desc())
                .limit(limit)
            )
        ).all()
        total = (
            await conn.execute(
                select(func.coalesce(func.sum(t.c.amount_cents), 0)).where(
                    t.c.viewer_id == viewer_id
                )
            )
        ).scalar_one()
    lines = [
        {
            "order_id": r.order_id,
            "level": r.level,
            "kind": r.kind,
            "amount_cents": r.amount_cents,
            "bps": r.bps,
            "order_total_cents": r.order_total_cents,
            "buyer_id": r.buyer_id,
            "stream_id": r.stream_id,
            "ts": r.ts,
        }
        for r in rows
    ]
    return {"lines": lines, "total_cents": int(total)}


async def referral_report(engine: AsyncEngine, sid: str) -> list[dict[str, Any]]:
    """Per referrer of the stream: viewers it brought, their orders net of refunds, the
    GMV of those orders, and the commission it earned at both levels."""
    lines, refs = CommissionLine.__table__, ReferralRow.__table__
    level1 = lines.c.level == 1
    one = case((lines.c.kind == SALE, 1), (lines.c.kind == REVERSAL, -1), else_=0)
    earned = (
        select(
            lines.c.viewer_id,
            func.coalesce(func.sum(case((level1, one), else_=0)), 0),
            func.coalesce(func.sum(case((level1, lines.c.order_total_cents), else_=0)), 0),
            func.coalesce(func.sum(lines.c.amount_cents), 0),
        )
        .where(lines.c.stream_id == sid)
        .group_by(lines.c.viewer_id)
    )
    referred = (
        select(refs.c.referrer_id, func.count())
        .where(refs.c.stream_id == sid)
        .group_by(refs.c.referrer_id)
    )
    out: dict[str, dict[str, Any]] = {}

    def row(viewer: str) -> dict[str, Any]:
        return out.setdefault(
            viewer,
            {
                "viewer_id": viewer,
                "referred": 0,
                "orders": 0,
                "gmv_cents": 0,
                "commission_cents": 0,
            },
        )

    async with engine.connect() as conn:
        for viewer, count in (await conn.execute(referred)).all():
            row(viewer)["referred"] = int(count)
        for viewer, orders, gmv, commission in (await conn.execute(earned)).all():
            r = row(viewer)
            r.update(orders=int(orders), gmv_cents=int(gmv), commission_cents=int(commission))
    return sorted(out.values(), key=lambda r: (-r["commission_cents"], r["viewer_id"]))
