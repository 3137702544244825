"""Reads of the order store for the API: one page of orders, and per-stream totals."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Any

import orjson
from sqlalchemy import and_, case, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from orders.models import GROUP_PENDING, HOLDING, PAID, STATUSES, OrderRow, ProductRow, StreamRow

MAX_PAGE = 200


class BadCursor(ValueError):
    pass


# A cursor is the (created_at, id) of the last order of a page, signed with the
# service's secret: the API only accepts cursors it issued, so no crafted value (a huge
# integer, a wrong type) ever reaches SQL. The shape is checked again all the same.
MAX_CURSOR_LEN = 200
MAX_CREATED_AT = 2**53
_MAC_BYTES = 16


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"orders-cursor\n" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def encode_cursor(secret: bytes, created_at: int, rid: str) -> str:
    payload = orjson.dumps([created_at, rid])
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def decode_cursor(secret: bytes, cursor: str) -> tuple[int, str]:
    if len(cursor) > MAX_CURSOR_LEN or not cursor.isascii():
        raise BadCursor("not a cursor this service issued")
    body, _, mac = cursor.partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
    except (binascii.Error, ValueError):
        raise BadCursor("not a cursor this service issued") from None
    if not hmac.compare_digest(given, _mac(secret, payload)):
        raise BadCursor("not a cursor this service issued")
    try:
        created_at, rid = orjson.loads(payload)
    except (ValueError, TypeError):
        raise BadCursor("malformed cursor") from None
    if (
        type(created_at) is not int
        or not 0 <= created_at < MAX_CREATED_AT
        or not isinstance(rid, str)
        or len(rid) > 64
    ):
        raise BadCursor("malformed cursor")
    return created_at, rid


def order_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "reservation_id": row.id,
        "order_id": row.order_id,
        "viewer_id": row.viewer_id,
        "sku": row.sku,
        "qty": row.qty,
        "price_cents": row.price_cents,
        "total_cents": row.qty * row.price_cents,
        "sale_id": row.sale_id,
        "status": row.status,
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "paid_at": row.paid_at,
        "cancelled_at": row.cancelled_at,
        "expired_at": row.expired_at,
        "group_id": row.group_id,
        "refunded_at": row.refunded_at,
    }


async def orders_page(
    engine: AsyncEngine,
    sid: str,
    limit: int,
    cursor: str | None = None,
    status: str | None = None,
    *,
    secret: bytes,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first by (created_at, id): a keyset page, stable while rows are added.
    `secret` signs the next page's cursor and checks the one given (BadCursor)."""
    t = OrderRow.__table__
    where = [t.c.stream_id == sid]
    if status is not None:
        where.append(t.c.status == status)
    if cursor is not None:
        created_at, rid = decode_cursor(secret, cursor)
        if engine.dialect.name == "sqlite":
            where.append(
                or_(t.c.created_at < created_at, and_(t.c.created_at == created_at, t.c.id < rid))
            )
        else:
            where.append(tuple_(t.c.created_at, t.c.id) < tuple_(created_at, rid))
    stmt = select(t).where(*where).order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit + 1)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = encode_cursor(secret, rows[-1].created_at, rows[-1].id) if more and rows else None
    return [order_json(r) for r in rows], nxt


async def reservation_record(engine: AsyncEngine, rid: str) -> dict[str, Any] | None:
    """A reservation as SQL keeps it, in the shape Redis answered with (after Redis
    purged it, LIVE_SETTLED_RETENTION_S after it settled), or None."""
    t = OrderRow.__table__
    async with engine.connect() as conn:
        row = (await conn.execute(select(t).where(t.c.id == rid))).first()
    if row is None:
        return None
    out = {
        k: v for k, v in row._mapping.items() if v is not None or k in ("sale_id", "order_id")
    }
    return out


async def order_totals(engine: AsyncEngine, sid: str) -> dict[str, int]:
    """Counts of reservations per status and the revenue of the paid ones."""
    t = OrderRow.__table__
    stmt = (
        select(
            t.c.status,
            func.count(),
            func.coalesce(func.sum(t.c.qty), 0),
            func.coalesce(
                func.sum(case((t.c.status == PAID, t.c.qty * t.c.price_cents), else_=0)), 0
            ),
        )
        .where(t.c.stream_id == sid)
        .group_by(t.c.status)
    )
    out = dict.fromkeys(STATUSES, 0)
    out.update({f"{s}_units": 0 for s in STATUSES})
    out["revenue_cents"] = 0
    async with engine.connect() as conn:
        for status, count, units, revenue in (await conn.execute(stmt)).all():
            out[status] = int(count)
            out[f"{status}_units"] = int(units)
            out["revenue_cents"] += int(revenue)
    return out


async def stream_record(engine: AsyncEngine, sid: str) -> dict[str, Any] | None:
    """The SQL record of a stream (id, title, host_name, created_at, ended_at), or None."""
    t = StreamRow.__table__
    async with engine.connect() as conn:
        row = (await conn.execute(select(t).where(t.c.id == sid))).first()
    return dict(row._mapping) if row is not None else None


async def archived_products(engine: AsyncEngine, sid: str) -> list[dict[str, Any]]:
    """The stream's products from SQL, oldest first, each with `stock_left`: its stock
    less the units of its reserved, group-pending and paid orders (what Redis said once
    every sale and reservation of the stream was over)."""
    p, o = ProductRow.__table__, OrderRow.__table__
    taken = (
        select(o.c.sku, func.coalesce(func.sum(o.c.qty), 0).label("units"))
        .where(o.c.stream_id == sid, o.c.status.in_(HOLDING))
        .group_by(o.c.sku)
        .subquery()
    )
    stmt = (
        select(p, func.coalesce(taken.c.units, 0).label("units"))
        .select_from(p.outerjoin(taken, taken.c.sku == p.c.sku))
        .where(p.c.stream_id == sid)
        .order_by(p.c.created_at, p.c.sku)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [
        {
            "stream_id": r.stream_id,
            "sku": r.sku,
            "title": r.title,
            "price_cents": r.price_cents,
            "stock": r.stock,
            "per_user_limit": r.per_user_limit,
            "created_at": r.created_at,
            "stock_left": max(0, r.stock - int(r.units)),
        }
        for r in rows
    ]


async def paid_order(engine: AsyncEngine, rid: str) -> dict[str, Any] | None:
    """The order of reservation `rid` if SQL has it as paid or group_pending (a confirm
    that answered 200 is there even when Redis has lost it)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(OrderRow).where(
                    OrderRow.id == rid, OrderRow.status.in_((PAID, GROUP_PENDING))
                )
            )
        ).first()
    return {**order_json(row), "stream_id": row.stream_id} if row is not None else None
