"""Reservations: stock held for a viewer until paid, cancelled or expired."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from inventory import keys
from inventory.batching import Batcher
from inventory.scripts import register, run, text

MAX_QTY = 1000
MAX_KEY_LEN = 100
EXPIRE_BATCH = 200

# A reservation id carries its stream's id, so `/api/reservations/{id}` finds the stream
# (and its hash-tagged keys) without a global index: r_<stream hex><random hex>.
_STREAM_ID = re.compile(r"^s_([0-9a-f]{16})$")
_RESERVATION_ID = re.compile(r"^r_([0-9a-f]{16})([0-9a-f]{16})$")


# One buy request as reserve.lua takes it: viewer, sku, qty, key, new id, sale id or "".
Item = tuple[str, str, int, str, str, str]


class ReservationError(Exception):
    """A reservation could not be made or changed; `code` is the PROTOCOL.md code."""

    def __init__(
        self,
        code: str,
        reservation: dict[str, Any] | None = None,
        *,
        stock_changed: bool = False,
        ended_sale: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.reservation = reservation
        # Side effects that happened even though the request failed (an overdue
        # reservation expired on the way, a sale found over): the caller announces them.
        self.stock_changed = stock_changed
        self.ended_sale = ended_sale


@dataclass
class Outcome:
    """What a state change did: the reservation, whether it is new, and the side effects
    the caller must announce (skus whose stock changed, a sale that ended)."""

    reservation: dict[str, Any]
    created: bool = False
    stock_changed: bool = False
    ended_sale: dict[str, Any] | None = None
    skus: list[str] = field(default_factory=list)


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
    ) -> None:
        """`batch`: reserve calls for one stream made in the same event-loop turn run as
        one script call (see inventory/batching.py)."""
        self.redis = redis
        self._batcher = Batcher(self._reserve_batch) if batch else None
        self.ttl_ms = int(ttl_s * 1000)
        self.buys_per_window = buys_per_window
        self.window_ms = window_ms
        self._reserve = register(redis, "reserve.lua")
        self._confirm = register(redis, "confirm.lua")
        self._cancel = register(redis, "cancel.lua")
        self._expire = register(redis, "expire.lua")

    async def reserve(
        self,
        sid: str,
        viewer_id: str,
        sku: str,
        qty: int,
        key: str,
        sale_id: str | None = None,
    ) -> Outcome:
        if not isinstance(qty, int) or isinstance(qty, bool) or not 1 <= qty <= MAX_QTY:
            raise ReservationError("invalid_qty")
        if not key or len(key) > MAX_KEY_LEN:
            raise ReservationError("invalid_key")
        item = (viewer_id, sku, qty, key, new_reservation_id(sid), sale_id or "")
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
        flat = await run(
            self._reserve,
            keys=[*keys.script_keys(sid), *(keys.buy_rate(sid, item[0]) for item in items)],
            args=[self.ttl_ms, self.buys_per_window, self.window_ms, sid,
                  *(arg for item in items for arg in item)],
        )
        return [flat[i : i + 4] for i in range(0, len(flat), 4)]

    async def _change(self, script: Any, rid: str, args: list[Any]) -> tuple[str, Any]:
        sid = stream_of(rid)
        if sid is None:
            raise ReservationError("not_found")
        outcome, raw = await run(script, keys=keys.script_keys(sid), args=[rid, *args])
        return text(outcome), _json(raw)

    async def confirm(self, rid: str, viewer_id: str) -> Outcome:
        """Pay for a reservation (simulated); the same answer when it is paid already."""
        order_id = "o_" + rid[2:]
        outcome, r = await self._change(self._confirm, rid, [viewer_id, order_id])
        if outcome == "paid":
            return Outcome(r)
        if outcome == "expired_now":
            raise ReservationError("expired", r, stock_changed=True)
        raise ReservationError(outcome, r)

    async def cancel(self, rid: str, viewer_id: str) -> Outcome:
        """Cancel a reservation; stock returns at once. Cancelling again is a no-op."""
        outcome, r = await self._change(self._cancel, rid, [viewer_id])
        if outcome == "cancelled_now":
            return Outcome(r, stock_changed=True)
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
        skus, next_due = await run(self._expire, keys=keys.script_keys(sid), args=[limit])
        nd = text(next_due)
        return orjson.loads(text(skus)), (int(float(nd)) if nd else None)
