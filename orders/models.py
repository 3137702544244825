"""SQL schema of the order store (SQLAlchemy 2 declarative models).

The schema itself is created and evolved by the Alembic migrations in
`orders/migrations/`; these models are what the code queries with. There are no foreign
keys between the tables on purpose: a recovering drainer may apply a product or an order
before the stream it belongs to (entries claimed from a dead consumer arrive late), and
that must never fail a batch.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class StreamRow(Base):
    __tablename__ = "streams"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    host_name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[int] = mapped_column(BigInteger)
    ended_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ProductRow(Base):
    __tablename__ = "products"

    stream_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(BigInteger)
    stock: Mapped[int] = mapped_column(Integer)
    per_user_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


# Statuses of a reservation row. `reserved` and `group_pending` (a group member paid,
# the group is not formed yet) are the only non-terminal ones.
RESERVED = "reserved"
PAID = "paid"
CANCELLED = "cancelled"
EXPIRED = "expired"
GROUP_PENDING = "group_pending"
REFUNDED = "refunded"
STATUSES = (RESERVED, PAID, CANCELLED, EXPIRED, GROUP_PENDING, REFUNDED)
# The only moves a row's status makes, whatever order its events are applied in:
# `reserved` to anything else; a group member's payment to `paid` (group formed) or
# `refunded` (group failed, or the host refunded); `paid` to `refunded` (host refund).
# Everything else is final: a terminal status is never overwritten.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    RESERVED: (PAID, CANCELLED, EXPIRED, GROUP_PENDING, REFUNDED),
    GROUP_PENDING: (PAID, REFUNDED),
    PAID: (REFUNDED,),
}
# Units of these hold stock (not returned): reconcile and archived stock count them.
HOLDING = (RESERVED, PAID, GROUP_PENDING)


def supersedes(old: str, new: str) -> bool:
    """Whether a row at status `old` takes status `new`."""
    return new in TRANSITIONS.get(old, ())


class OrderRow(Base):
    """One row per reservation id (the primary key makes every replay a no-op)."""

    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # reservation id
    order_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    stream_id: Mapped[str] = mapped_column(String(64))
    viewer_id: Mapped[str] = mapped_column(String(64))
    sku: Mapped[str] = mapped_column(String(64))
    qty: Mapped[int] = mapped_column(Integer)
    price_cents: Mapped[int] = mapped_column(BigInteger)
    sale_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    paid_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expired_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Group buys and refunds (migration 0002): the member's group, when refunded.
    group_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    refunded_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        # Keyset pagination newest first: WHERE stream_id = ? AND (created_at, id) < (?, ?)
        Index("ix_orders_stream_created", "stream_id", "created_at", "id"),
        # Stats: counts and revenue per status of one stream.
        Index("ix_orders_stream_status", "stream_id", "status"),
    )
