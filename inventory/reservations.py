"""Reservations: stock held for a viewer until paid, cancelled or expired."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from domain.errors import DomainError
from inventory import keys
from inventory.batching import Batcher
from inventory.guard import Guard
from inventory.scripts import load, run
from inventory.streams import meta_key
from realtime import keys as rt_keys
from rediskit.codec import text

RESERVE = load("reserve.lua")
CONFIRM = load("confirm.lua")
CANCEL = load("cancel.lua")
EXPIRE = load("expire.lua")
PURGE = load("purge.lua")

MAX_QTY = 1000
MAX_KEY_LEN = 100
EXPIRE_BATCH = 200

# A reservation id carries its stream's id, so `/api/reservations/{id}` finds the stream
# (and its hash-tagged keys) without a global index: r_<stream hex><random hex>.
_STREAM_ID = re.compile(r"^s_([0-9a-f]{16})$")
_RESERVATION_ID = re.compile(r"^r_([0-9a-f]{16})([0-9a-f]{16})$")


# One buy request as reserve.lua takes it: viewer, sku, qty, key, new id, sale id or "",
# "1" to send the viewer its reservation as a message (else "").
Item = tuple[str, str, int, str, str, str, str]


class ReservationError(DomainError):
    """A reservation could not be made or changed; `code` is the protocol's error code
    (docs/protocol.md)."""

    details = {
        "unknown_stream": "no such stream",
        "stream_ended": "the stream has ended",
        "sold_out": "not enough stock left",
        "limit_exceeded": "over the per-viewer limit for this item",
        "unknown_sku": "no such product in this stream",
        "sale_not_active": "that flash sale is not running",
        "idempotency_conflict": "this key was used for another sku or qty",
        "rate_limited": "too many buys; slow down",
        "invalid_qty": f"qty must be an integer from 1 to {MAX_QTY}",
        "invalid_key": f"key must be 1 to {MAX_KEY_LEN} characters",
        "not_found": "no such reservation",
        "forbidden": "this reservation belongs to another viewer",
        "expired": "the reservation expired and its stock was released",
        "cancelled": "the reservation was cancelled",
        "paid": "the reservation is paid already",
        "refunded": "the reservation was refunded",
        "group_pending": "the reservation is paid and waits for its group to form",
    }

    def __init__(
        self,
        code: str,
        reservation: dict[str, Any] | None = None,
        *,
        stock_changed: bool = False,
        ended_sale: dict[str, Any] | None = None,
        group: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code)
        self.reservation = reservation
        # Side effects that happened even though the request failed (an overdue
        # reservation expired on the way, a sale found over): the caller announces them.
        self.stock_changed = stock_changed
        self.ended_sale = ended_sale
        self.group = group  # a group buy's group that failed on the way (inventory/groups.py)


@dataclass
class Outcome:
    """What a state change did: the reservation, whether it is new, and the side effects
    the caller must announce (the stock changed, a sale ended)."""

    reservation: dict[str, Any]
    created: bool = False
    stock_changed: bool = False
    ended_sale: dict[str, Any] | None = None
    # Group buys: the member's group after a payment, when this call changed it, and
    # the groups a released hold left (their counts changed).
    group: dict[str, Any] | None = None
    groups_changed: list[str] = field(default_factory=list)


def new_reservation_id(sid: str) -> str:
    m = _STREAM_ID.match(sid)
    if m is None:
        raise ValueError(f"not a stream id: {sid!r}")
    return f"r_{m.group(1)}{secrets.token_hex(8)}"


def stream_of(reservation_id: str) -> str | None:
    m = _RESERVATION_ID.match(reservation_id)
    return f"s_{m.group(1)}" if m else None


def _json(raw: object) -> dict[str, Any] | None:
    s = text(raw)
    return orjson.loads(s) if s else None


class Reservations:
    def __init__(
        self,
        redis: Redis,
        ttl_s: float,
        buys_per_window: int = 20,
        window_ms: int = 1000,
        batch: bool = False,
        guard: Guard | None = None,
        settled_retention_s: float = 3600,
        check_stream: bool = False,
    ) -> None:
        """`batch`: reserve calls for one stream made in the same event-loop turn run as
        one script call (see inventory/batching.py). `guard`: what to do when a stream
        must be checked against the order store first (inventory/guard.py).
        `check_stream`: the script refuses a stream without a record (`unknown_stream`)
        or not live (`stream_ended`), in the same step as the reservation."""
        self.redis = redis
        self.check_stream = "1" if check_stream else ""
        self.guard = guard or Guard()
        self._batcher = Batcher(self._reserve_batch) if batch else None
        self.ttl_ms = int(ttl_s * 1000)
        self.buys_per_window = buys_per_window
        self.window_ms = window_ms
        self.settled_retention_ms = int(settled_retention_s * 1000)
        self._reserve = RESERVE.register(redis)
        self._confirm = CONFIRM.register(redis)
        self._cancel = CANCEL.register(redis)
        self._expire = EXPIRE.register(redis)
        self._purge = PURGE.register(redis)

    async def reserve(
        self,
        sid: str,
        viewer_id: str,
        sku: str,
        qty: int,
        key: str,
        sale_id: str | None = None,
        notify: bool = False,
    ) -> Outcome:
        """`notify`: a new reservation, or the same one again, also goes to the viewer's
        open sockets as a `reservation` message (realtime/personal.py), from the script."""
        if not isinstance(qty, int) or isinstance(qty, bool) or not 1 <= qty <= MAX_QTY:
            raise ReservationError("invalid_qty")
        if not key or len(key) > MAX_KEY_LEN:
            raise ReservationError("invalid_key")
        if self.check_stream and _STREAM_ID.match(sid) is None:
            raise ReservationError("unknown_stream")
        item = (viewer_id, sku, qty, key, new_reservation_id(sid), sale_id or "",
                "1" if notify else "")
        if self._batcher is None:
            outcome, raw, ended, first = (await self._reserve_batch(sid, [item]))[0]
        else:
            outcome, raw, ended, first = await self._batcher(sid, item)
        outcome, reservation, ended_sale = text(outcome), _json(raw), _json(ended)
        if outcome == "created":
            assert reservation is not None
            if int(first):
                # Registered after the script: a crash in between leaves the stream to
                # the sweeper's periodic full scan.
                await self.redis.zadd(
                    keys.SWEEP_RESERVATIONS, {sid: reservation["expires_at"]}, lt=True
                )
            return Outcome(reservation, created=True, stock_changed=True, ended_sale=ended_sale)
        if outcome == "existing":
            assert reservation is not None
            return Outcome(reservation, ended_sale=ended_sale)
        raise ReservationError(outcome, reservation, ended_sale=ended_sale)

    async def _reserve_batch(self, sid: str, items: list[Item]) -> list[list[Any]]:
        """Run reserve.lua once over `items` (all of stream `sid`); 4 values per item."""
        script_keys = [*keys.script_keys(sid), meta_key(sid),
                       *(keys.buy_rate(sid, item[0]) for item in items)]
        args = [self.ttl_ms, self.buys_per_window, self.window_ms, sid, self.check_stream,
                rt_keys.channel(sid), *(arg for item in items for arg in item)]
        flat = await self.guard(sid, lambda: run(self._reserve, keys=script_keys, args=args))
        return [flat[i : i + 4] for i in range(0, len(flat), 4)]

    async def _change(self, script: Any, rid: str, args: list[Any]) -> tuple[str, Any, str]:
        """Run a reservation script; (outcome, reservation, the script's third value:
        a group JSON or a JSON list of changed groups, '' when it has none)."""
        sid = stream_of(rid)
        if sid is None:
            raise ReservationError("not_found")
        reply = await self.guard(
            sid, lambda: run(script, keys=keys.script_keys(sid), args=[rid, *args])
        )
        extra = text(reply[2]) if len(reply) > 2 else ""
        r = _json(reply[1])
        if r is not None and r.get("status") != "reserved":
            # Settled now or before: make sure the sweeper purges it when its time comes
            # (a repeat is one cheap ZADD that changes nothing).
            settled_at = r.get("paid_at") or r.get("cancelled_at") or r.get("expired_at")
            if isinstance(settled_at, int):
                await self.register_settled(sid, settled_at)
        return text(reply[0]), r, extra

    async def register_settled(self, sid: str, settled_at: int) -> None:
        await self.redis.zadd(keys.SWEEP_SETTLED, {sid: settled_at}, lt=True)

    async def purge_settled(self, sid: str, limit: int = EXPIRE_BATCH) -> int | None:
        """Remove up to `limit` of the stream's cancelled, expired or refunded
        reservations settled more than the retention ago; returns the settled time of
        the oldest settled one left, or None."""
        first = await run(
            self._purge, keys=keys.script_keys(sid), args=[self.settled_retention_ms, limit]
        )
        f = text(first)
        return int(float(f)) if f else None

    async def confirm(self, rid: str, viewer_id: str) -> Outcome:
        """Pay for a reservation (simulated); the same answer when it is paid already.
        A group member's payment answers `group_pending` (or `paid` when it completed
        the group); `Outcome.group` is then the group."""
        order_id = "o_" + rid[2:]
        outcome, r, extra = await self._change(self._confirm, rid, [viewer_id, order_id])
        if outcome in ("paid", "group_pending"):
            return Outcome(r, group=_json(extra))
        if outcome == "expired_now":
            raise ReservationError("expired", r, stock_changed=True)
        if outcome == "group_closed":
            group = _json(extra)
            raise ReservationError(outcome, r, stock_changed=group is not None, group=group)
        raise ReservationError(outcome, r)

    async def cancel(self, rid: str, viewer_id: str) -> Outcome:
        """Cancel a reservation; stock returns at once. Cancelling again is a no-op."""
        outcome, r, extra = await self._change(self._cancel, rid, [viewer_id])
        if outcome == "cancelled_now":
            return Outcome(r, stock_changed=True, groups_changed=orjson.loads(extra or "[]"))
        if outcome == "cancelled":
            return Outcome(r)
        if outcome == "expired_now":
            raise ReservationError("expired", r, stock_changed=True)
        raise ReservationError(outcome, r)

    async def get(self, rid: str) -> dict[str, Any] | None:
        sid = stream_of(rid)
        if sid is None:
            return None
        return _json(await self.redis.hget(keys.reservations(sid), rid) or "")

    async def expire_due(self, sid: str, limit: int = EXPIRE_BATCH) -> tuple[list[str], int | None]:
        """Expire up to `limit` overdue reservations of a stream.

        Returns the skus whose stock came back and the earliest expiry still open.
        """
        skus, next_due, _ = await self.expire_due_groups(sid, limit)
        return skus, next_due

    async def expire_due_groups(
        self, sid: str, limit: int = EXPIRE_BATCH
    ) -> tuple[list[str], int | None, list[str]]:
        """`expire_due`, plus the groups a member dropped out of (their slot reopened)."""
        skus, next_due, groups = await self.guard(
            sid, lambda: run(self._expire, keys=keys.script_keys(sid), args=[limit])
        )
        nd = text(next_due)
        return (
            orjson.loads(text(skus)),
            (int(float(nd)) if nd else None),
            orjson.loads(text(groups)),
        )
