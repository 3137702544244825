"""SQL tables of group buys and referral commissions (migration 0002_social).

No foreign keys, as for the other tables: a recovering drainer may apply rows in any
order. The commission ledger is append-only: `(order_id, level, kind)` is unique, so a
replayed batch cannot write a line twice, and nothing updates or deletes a line.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from orders.models import Base

# Group statuses: `open` becomes `formed` or `failed`, once.
OPEN = "open"
FORMED = "formed"
FAILED = "failed"

# Ledger line kinds: a paid order's commission, and its reversal when refunded.
SALE = "sale"
REVERSAL = "reversal"


class GroupRow(Base):
    __tablename__ = "groups"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream_id: Mapped[str] = mapped_column(String(64))
    group_buy_id: Mapped[str] = mapped_column(String(64))
    sku: Mapped[str] = mapped_column(String(64))
    share_code: Mapped[str] = mapped_column(String(16))
    group_size: Mapped[int] = mapped_column(Integer)
    price_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    settled_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (Index("ix_groups_stream_status", "stream_id", "status"),)


class ReferralRow(Base):
    """Who brought whom to a stream (first touch: one row per viewer and stream)."""

    __tablename__ = "referrals"

    stream_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    viewer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    referrer_id: Mapped[str] = mapped_column(String(64))
    bound_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_referrals_stream_referrer", "stream_id", "referrer_id"),)


class CommissionLine(Base):
    __tablename__ = "commission_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(64))
    level: Mapped[int] = mapped_column(Integer)  # 1: direct referrer, 2: its referrer
    kind: Mapped[str] = mapped_column(String(16))  # sale / reversal
    stream_id: Mapped[str] = mapped_column(String(64))
    viewer_id: Mapped[str] = mapped_column(String(64))  # who earns it
    buyer_id: Mapped[str] = mapped_column(String(64))
    bps: Mapped[int] = mapped_column(Integer)
    order_total_cents: Mapped[int] = mapped_column(BigInteger)  # negative on a reversal
    amount_cents: Mapped[int] = mapped_column(BigInteger)  # negative on a reversal
    ts: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        UniqueConstraint("order_id", "level", "kind", name="uq_commission_once"),
        Index("ix_commission_viewer", "viewer_id", "ts"),
        Index("ix_commission_stream_viewer", "stream_id", "viewer_id"),
    )
