"""Response models of the HTTP API, for the OpenAPI document (`GET /openapi.json`).

They describe what the handlers answer: the fields every answer has are required, the
ones only some have are optional, and more fields may come (clients must ignore what
they do not know), so each allows extra properties.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Error(Out):
    """Every error: a stable code and a human-readable detail."""

    error: str = Field(description="stable error code, e.g. sold_out")
    detail: str = Field(description="what went wrong, for humans")


StreamStatus = Literal["live", "ended"]
ReservationStatus = Literal[
    "reserved", "paid", "cancelled", "expired", "group_pending", "refunded"
]


class Stream(Out):
    id: str
    title: str
    host_name: str
    status: StreamStatus
    pinned_sku: str | None
    created_at: int = Field(description="ms since the epoch")
    ended_at: int | None
    archived: bool | None = Field(None, description="present (true) once retired to SQL")


class StreamCreated(Stream):
    host_token: str = Field(description="bearer token of the stream's host")
    ws_path: str


class Product(Out):
    stream_id: str
    sku: str
    title: str
    price_cents: int
    stock: int
    per_user_limit: int | None
    created_at: int
    stock_left: int = Field(description="what can be bought now")


class Sale(Out):
    id: str
    stream_id: str
    sku: str
    price_cents: int
    stock: int
    per_user_limit: int | None
    starts_at: int
    ends_at: int
    stock_left: int | None = None


class StreamState(Stream):
    products: list[Product]
    sales: list[Sale]
    viewers: int
    seq: int | None = Field(description="last broadcast seq; null once archived")


class Pinned(Out):
    pinned_sku: str
    seq: int


class Seq(Out):
    seq: int


class Viewer(Out):
    viewer_id: str
    name: str
    token: str = Field(description="bearer token of the viewer")


class Reservation(Out):
    id: str
    stream_id: str
    viewer_id: str
    sku: str
    qty: int
    price_cents: int
    key: str
    status: ReservationStatus
    created_at: int
    expires_at: int
    sale_id: str | None = None
    order_id: str | None = None
    paid_at: int | None = None
    cancelled_at: int | None = None
    expired_at: int | None = None


class Confirmed(Reservation):
    """Paid (or `group_pending` for a group member until the group forms)."""

    order_id: str | None


class Order(Out):
    id: str
    reservation_id: str
    order_id: str | None
    viewer_id: str
    sku: str
    qty: int
    price_cents: int
    total_cents: int
    sale_id: str | None
    status: ReservationStatus
    created_at: int
    expires_at: int | None = None
    paid_at: int | None = None
    cancelled_at: int | None = None
    expired_at: int | None = None


class OrderPage(Out):
    orders: list[Order]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page")


class Stats(Out):
    viewers: int
    peak_viewers: int
    comments: int
    likes: int
    reserved: int
    paid: int
    cancelled: int
    expired: int
    revenue_cents: int


class CommentDeleted(Out):
    id: str
    deleted: Literal[True]
    seq: int


class MuteState(Out):
    viewer_id: str
    muted: bool


class MuteList(Out):
    viewer_ids: list[str]


class WordList(Out):
    words: list[str]


class DrainHealth(Out):
    status: str = Field(description="ok, behind, or error: ...")
    lag: int | None = None
    pending: int | None = None
    max_lag: int | None = None


class Health(Out):
    status: Literal["ok", "degraded"]
    redis: str = Field(description="ok, or error: KIND")
    db: str = Field(description="ok, or error: KIND")
    drain: DrainHealth | None = None


class OpenApiDocument(Out):
    openapi: str
    info: dict[str, object]
    paths: dict[str, object]


# Group buys, referrals and refunds: described by their stable fields; more may come.


class GroupBuy(Out):
    """A host's group-buy offer."""


class GroupBuyList(Out):
    group_buys: list[GroupBuy]


class Group(Out):
    """A viewers' group of a group buy (the joining viewer's reservation with it)."""


class Commission(Out):
    """The stream's referral commission rates."""


class ReferralLink(Out):
    """A viewer's referral link for the stream."""


class ReferralBound(Out):
    """The viewer's referral binding."""


class ReferralList(Out):
    """The stream's referrals and their commissions."""


class MyCommissions(Out):
    """The viewer's commissions."""


class Refund(Out):
    order_id: str
    status: Literal["refunded"]
    refunded_at: int | None
    reservation: dict[str, object]


class StreamDirectory(Out):
    """A page of the public directory of streams."""

    streams: list[dict[str, object]]
    next_cursor: str | None
