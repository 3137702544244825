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


def buy_rate(sid: str, viewer_id: str) -> str:
    """Counter of a viewer's buys in the current rate-limit window."""
    return f"inv:{{{sid}}}:rate:{viewer_id}"


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
    ]


# Global (not per-stream) sorted sets the sweepers of every process poll: stream id ->
# earliest expiry of its open reservations, and "sid sku sale_id" -> a sale's end.
SWEEP_RESERVATIONS = "inv:sweep:reservations"
SWEEP_SALES = "inv:sweep:sales"
