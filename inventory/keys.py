"""Redis keys of the inventory. Every key of one stream carries the hash tag `{sid}`."""

from __future__ import annotations

# Set of the ids of every stream ever created: the order drainer walks it to find the
# event streams it must read.
STREAMS = "live:streams"


def products(sid: str) -> str:
    """Hash sku -> product JSON (title, price_cents, stock, per_user_limit, created_at)."""
    return f"inv:{{{sid}}}:products"


def stock(sid: str) -> str:
    """Hash sku -> units left to reserve."""
    return f"inv:{{{sid}}}:stock"


def events(sid: str) -> str:
    """Redis Stream of inventory events for the order drainer (fields `type`, `data`)."""
    return f"inv:{{{sid}}}:events"


def sales(sid: str) -> str:
    """Hash sku -> JSON of the sku's active flash sale."""
    return f"inv:{{{sid}}}:sales"


def held(sid: str) -> str:
    """Hash sku -> regular units set aside while a flash sale of the sku runs."""
    return f"inv:{{{sid}}}:held"


def reservations(sid: str) -> str:
    """Hash reservation id -> reservation JSON (the shape of docs/EVENTS.md)."""
    return f"inv:{{{sid}}}:res"


def idempotency(sid: str) -> str:
    """Hash "viewer\\nkey" -> reservation id."""
    return f"inv:{{{sid}}}:idem"


def counts(sid: str) -> str:
    """Hash "viewer\\nsku" (or "viewer\\nsku\\nsale") -> units the viewer holds."""
    return f"inv:{{{sid}}}:counts"


def expiry(sid: str) -> str:
    """Sorted set reservation id -> expires_at (ms) of the reservations still open."""
    return f"inv:{{{sid}}}:expiry"


def checked(sid: str) -> str:
    """String: run_id of the Redis server on which the stream's stock was last checked
    against the order store (inventory/guard.py)."""
    return f"inv:{{{sid}}}:checked"


def dead_letters(sid: str) -> str:
    """Redis Stream of the stream's events SQL refused for good (orders/deadletter.py)."""
    return f"inv:{{{sid}}}:dead"


def settled(sid: str) -> str:
    """Sorted set reservation id -> when it was settled (paid, cancelled, expired), ms:
    what the sweeper removes from `res` and `idem` once `LIVE_SETTLED_RETENTION_S` old."""
    return f"inv:{{{sid}}}:settled"


def purged(sid: str) -> str:
    """Hash of what the purge removed: `rows` (reservations), `paid:<sku>` (their paid
    units), so that reconcile still balances stock against SQL."""
    return f"inv:{{{sid}}}:purged"


def buy_rate(sid: str, viewer_id: str) -> str:
    """Counter of a viewer's buys in the current rate-limit window."""
    return f"inv:{{{sid}}}:rate:{viewer_id}"


def group_buys(sid: str) -> str:
    """Hash group-buy id -> group-buy JSON (inventory/groups.py)."""
    return f"inv:{{{sid}}}:gbuys"


def groups(sid: str) -> str:
    """Hash group id -> group JSON with its members."""
    return f"inv:{{{sid}}}:groups"


def group_expiry(sid: str) -> str:
    """Sorted set group id -> end of its window, for the groups still open."""
    return f"inv:{{{sid}}}:gexpiry"


def referrals(sid: str) -> str:
    """Hash viewer id -> the viewer who brought it to this stream (first touch)."""
    return f"inv:{{{sid}}}:refs"


def referral_codes(sid: str) -> str:
    """Hash "c:CODE" -> owner viewer id and "v:VIEWER" -> that viewer's code."""
    return f"inv:{{{sid}}}:refcodes"


def commission(sid: str) -> str:
    """Hash level1_bps, level2_bps: the stream's referral commission rates now."""
    return f"inv:{{{sid}}}:commission"


def group_code(code: str) -> str:
    """String share code -> group id (global: a code alone must find its group)."""
    return f"inv:gcode:{code}"


def script_keys(sid: str) -> list[str]:
    """The KEYS every inventory script takes, in the order of lua/common.lua."""
    return [
        products(sid),
        stock(sid),
        sales(sid),
        held(sid),
        reservations(sid),
        idempotency(sid),
        counts(sid),
        expiry(sid),
        events(sid),
        group_buys(sid),
        groups(sid),
        group_expiry(sid),
        referrals(sid),
        commission(sid),
        checked(sid),
        settled(sid),
        purged(sid),
    ]


# Global (not per-stream) sorted sets the sweepers of every process poll: stream id ->
# earliest expiry of its open reservations, and "sid sku sale_id" -> a sale's end.
SWEEP_RESERVATIONS = "inv:sweep:reservations"
SWEEP_SALES = "inv:sweep:sales"
# stream id -> end of the earliest window of its open groups.
SWEEP_GROUPS = "inv:sweep:groups"
# And stream id -> the settled time of its oldest settled reservation still kept.
SWEEP_SETTLED = "inv:sweep:settled"
