"""Group and referral events (docs/EVENTS.md) into rows of a drainer batch (pure).

A group's row follows the same precedence as orders: `open` never overwrites anything,
and the first of `formed` / `failed` wins for good (Redis decides only one anyway)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orders.social_models import OPEN

if TYPE_CHECKING:
    from orders.events import Batch

GROUP_EVENTS = frozenset({"group.opened", "group.formed", "group.failed"})
TYPES = GROUP_EVENTS | {"referral.bound"}
# Recorded in Redis (and the event stream) only: nothing in SQL needs them.
IGNORED = frozenset({"groupbuy.started", "groupbuy.closed", "commission.set"})


def add(batch: Batch, type_: str, d: dict[str, Any]) -> None:
    if type_ == "referral.bound":
        key = (str(d["stream_id"]), str(d["viewer_id"]))
        # First touch is decided in Redis; a replay carries the same binding.
        batch.referrals.setdefault(
            key,
            {
                "stream_id": key[0],
                "viewer_id": key[1],
                "referrer_id": str(d["referrer_id"]),
                "bound_at": int(d["bound_at"]),
            },
        )
        return
    settled = d.get("settled_at")
    row = {
        "id": str(d["id"]),
        "stream_id": str(d["stream_id"]),
        "group_buy_id": str(d["group_buy_id"]),
        "sku": str(d["sku"]),
        "share_code": str(d["share_code"]),
        "group_size": int(d["group_size"]),
        "price_cents": int(d["price_cents"]),
        "status": str(d["status"]),
        "opened_at": int(d["opened_at"]),
        "expires_at": int(d["expires_at"]),
        "settled_at": None if settled is None else int(settled),
    }
    seen = batch.groups.get(row["id"])
    if seen is None or (seen["status"] == OPEN and row["status"] != OPEN):
        batch.groups[row["id"]] = row
