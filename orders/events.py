"""Inventory events (docs/EVENTS.md) turned into the rows of one SQL batch.

Pure functions, no I/O: the drainer feeds them the entries it read from Redis and gets
back the rows to upsert. Several events about one reservation in one batch collapse
into one row by the same precedence SQL applies across batches: the first terminal
status wins, and `reserved` never overwrites anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from orders import social_events
from orders.ledger import ledger_lines
from orders.models import (
    CANCELLED,
    EXPIRED,
    GROUP_PENDING,
    PAID,
    REFUNDED,
    RESERVED,
    supersedes,
)
from rediskit.codec import text

RESERVATION_STATUS = {
    "reservation.created": RESERVED,
    "reservation.confirmed": PAID,
    "reservation.cancelled": CANCELLED,
    "reservation.expired": EXPIRED,
    "reservation.group_pending": GROUP_PENDING,
    "reservation.refunded": REFUNDED,
}
# Events the order store has no table for; they are acknowledged and skipped.
IGNORED = frozenset({"sale.started", "sale.ended", *social_events.IGNORED})


class BadEvent(ValueError):
    """An entry that can never be applied (malformed JSON, missing fields)."""


@dataclass
class Batch:
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    ended: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Group buys and referrals (orders/social_events.py, orders/ledger.py).
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    referrals: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    ledger: dict[tuple[str, int, str], dict[str, Any]] = field(default_factory=dict)
    bad: list[tuple[str, str, str]] = field(default_factory=list)  # key, entry id, why

    def __len__(self) -> int:
        return (
            len(self.streams) + len(self.ended) + len(self.products) + len(self.orders)
            + len(self.groups) + len(self.referrals) + len(self.ledger)
        )

    def add(self, key: str, entry_id: str, fields: dict[str, Any]) -> None:
        try:
            self._add(fields)
        except BadEvent as exc:
            self.bad.append((key, entry_id, str(exc)))

    def _add(self, fields: dict[str, Any]) -> None:
        type_ = text(fields.get("type") or fields.get(b"type"))
        raw = fields.get("data") or fields.get(b"data")
        if type_ in IGNORED:
            return
        try:
            data = orjson.loads(raw) if raw is not None else None
        except orjson.JSONDecodeError as exc:
            raise BadEvent(f"{type_}: malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadEvent(f"{type_}: data is not a JSON object")
        try:
            if type_ in RESERVATION_STATUS:
                self._reservation(RESERVATION_STATUS[type_], data)
            elif type_ in social_events.TYPES:
                social_events.add(self, type_, data)
            elif type_ == "stream.created":
                self.streams[str(data["id"])] = {
                    "id": str(data["id"]),
                    "title": str(data["title"]),
                    "host_name": str(data["host_name"]),
                    "created_at": int(data["created_at"]),
                    "ended_at": _opt_int(data.get("ended_at")),
                }
            elif type_ == "stream.ended":
                self.ended[str(data["id"])] = {
                    "id": str(data["id"]),
                    "title": "",
                    "host_name": "",
                    "created_at": int(data["ended_at"]),
                    "ended_at": int(data["ended_at"]),
                }
            elif type_ == "product.added":
                key = (str(data["stream_id"]), str(data["sku"]))
                self.products.setdefault(
                    key,
                    {
                        "stream_id": key[0],
                        "sku": key[1],
                        "title": str(data["title"]),
                        "price_cents": int(data["price_cents"]),
                        "stock": int(data["stock"]),
                        "per_user_limit": _opt_int(data.get("per_user_limit")),
                        "created_at": int(data["created_at"]),
                    },
                )
            else:
                raise BadEvent(f"unknown event type {type_!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise BadEvent(f"{type_}: bad or missing field {exc}") from None

    def _reservation(self, status: str, d: dict[str, Any]) -> None:
        has_order = status in (PAID, GROUP_PENDING, REFUNDED)
        row = {
            "id": str(d["id"]),
            "order_id": str(d["order_id"]) if has_order else None,
            "stream_id": str(d["stream_id"]),
            "viewer_id": str(d["viewer_id"]),
            "sku": str(d["sku"]),
            "qty": int(d["qty"]),
            "price_cents": int(d["price_cents"]),
            "sale_id": _opt_str(d.get("sale_id")),
            "key": _opt_str(d.get("key")),
            "status": status,
            "created_at": int(d["created_at"]),
            "expires_at": _opt_int(d.get("expires_at")),
            "paid_at": int(d["paid_at"]) if has_order else None,
            "cancelled_at": int(d["cancelled_at"]) if status == CANCELLED else None,
            "expired_at": int(d["expired_at"]) if status == EXPIRED else None,
            "group_id": _opt_str(d.get("group_id")),
            "refunded_at": int(d["refunded_at"]) if status == REFUNDED else None,
        }
        # Commission lines come from the event itself (it carries the referrer chain and
        # rates), keyed like the ledger's unique constraint.
        for line in ledger_lines(status, d):
            self.ledger[(line["order_id"], line["level"], line["kind"])] = line
        seen = self.orders.get(row["id"])
        if seen is None or supersedes(seen["status"], status):
            self.orders[row["id"]] = row


def _opt_int(v: Any) -> int | None:
    return None if v is None or v == "" else int(v)


def _opt_str(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)
