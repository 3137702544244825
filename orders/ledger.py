"""The referral commission ledger: lines derived from order events, written in the same
SQL transaction as the order rows of their batch.

A paid order of a referred buyer earns its direct referrer `level1_bps` and that
referrer's own referrer `level2_bps` of the order total (floor), at the rates copied onto
the order when it was paid (the event's `referral`). A refund of a paid order adds the
same lines negated. Lines are only ever inserted, and `(order_id, level, kind)` is
unique with `ON CONFLICT DO NOTHING`, so replays after any crash write nothing twice.
A `refunded` event writes the sale lines too (idempotently): the ledger is right
whichever of the order's events a recovering drainer applies first. A group member's
payment refunded before its group formed (`refunded_from: group_pending`) was never a
sale and earns nothing.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from orders.models import PAID, REFUNDED
from orders.social_models import REVERSAL, SALE, CommissionLine, GroupRow, ReferralRow


def ledger_lines(status: str, d: dict[str, Any]) -> list[dict[str, Any]]:
    ref = d.get("referral")
    if not isinstance(ref, dict) or not ref.get("level1"):
        return []
    if status == PAID:
        kinds = (SALE,)
    elif status == REFUNDED and d.get("refunded_from") == PAID:
        kinds = (SALE, REVERSAL)
    else:
        return []
    total = int(d["qty"]) * int(d["price_cents"])
    earners = [(1, str(ref["level1"]), int(ref.get("level1_bps") or 0))]
    if ref.get("level2"):
        earners.append((2, str(ref["level2"]), int(ref.get("level2_bps") or 0)))
    lines = []
    for kind in kinds:
        sign = -1 if kind == REVERSAL else 1
        if kind == REVERSAL:
            ts = int(d["refunded_at"])
        else:  # a group order is a sale when its group formed
            ts = int(d.get("formed_at") or d.get("paid_at") or 0)
        for level, viewer, bps in earners:
            lines.append(
                {
                    "order_id": str(d["order_id"]),
                    "level": level,
                    "kind": kind,
                    "stream_id": str(d["stream_id"]),
                    "viewer_id": viewer,
                    "buyer_id": str(d["viewer_id"]),
                    "bps": bps,
                    "order_total_cents": sign * total,
                    "amount_cents": sign * (total * bps // 10_000),
                    "ts": ts,
                }
            )
    return lines


def _insert(dialect: str, table: Any) -> Any:
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


# Built once per dialect, as orders/store.py's statements are.


@functools.cache
def _groups_upsert(dialect: str) -> Any:
    ins = _insert(dialect, GroupRow)
    return ins.on_conflict_do_update(
        index_elements=[GroupRow.id],
        set_={"status": ins.excluded.status, "settled_at": ins.excluded.settled_at},
        # `open` overwrites nothing; formed / failed are final.
        where=(GroupRow.status == "open") & (ins.excluded.status != "open"),
    )


@functools.cache
def _referrals_insert(dialect: str) -> Any:
    return _insert(dialect, ReferralRow).on_conflict_do_nothing()


@functools.cache
def _ledger_insert(dialect: str) -> Any:
    return _insert(dialect, CommissionLine).on_conflict_do_nothing(
        index_elements=["order_id", "level", "kind"]
    )


async def apply_social(conn: Any, dialect: str, batch: Any) -> None:
    """The batch's groups, referral bindings and ledger lines, on the drainer's
    transaction (`conn`): committed together with the order rows, or not at all."""
    if batch.groups:
        await conn.execute(_groups_upsert(dialect), list(batch.groups.values()))
    if batch.referrals:
        await conn.execute(_referrals_insert(dialect), list(batch.referrals.values()))
    if batch.ledger:
        await conn.execute(_ledger_insert(dialect), list(batch.ledger.values()))
