"""group buys and referral commissions: orders.group_id, orders.refunded_at, groups,
referrals, commission_lines

Revision ID: 0002_social
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_social"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("group_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("refunded_at", sa.BigInteger, nullable=True))
    op.create_table(
        "groups",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("stream_id", sa.String(64), nullable=False),
        sa.Column("group_buy_id", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("share_code", sa.String(16), nullable=False),
        sa.Column("group_size", sa.Integer, nullable=False),
        sa.Column("price_cents", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("settled_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_groups_stream_status", "groups", ["stream_id", "status"])
    op.create_table(
        "referrals",
        sa.Column("stream_id", sa.String(64), primary_key=True),
        sa.Column("viewer_id", sa.String(64), primary_key=True),
        sa.Column("referrer_id", sa.String(64), nullable=False),
        sa.Column("bound_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_referrals_stream_referrer", "referrals", ["stream_id", "referrer_id"])
    op.create_table(
        "commission_lines",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("stream_id", sa.String(64), nullable=False),
        sa.Column("viewer_id", sa.String(64), nullable=False),
        sa.Column("buyer_id", sa.String(64), nullable=False),
        sa.Column("bps", sa.Integer, nullable=False),
        sa.Column("order_total_cents", sa.BigInteger, nullable=False),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("order_id", "level", "kind", name="uq_commission_once"),
    )
    op.create_index("ix_commission_viewer", "commission_lines", ["viewer_id", "ts"])
    op.create_index("ix_commission_stream_viewer", "commission_lines", ["stream_id", "viewer_id"])


def downgrade() -> None:
    op.drop_table("commission_lines")
    op.drop_table("referrals")
    op.drop_table("groups")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("refunded_at")
        batch.drop_column("group_id")
