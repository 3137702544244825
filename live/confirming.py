"""Confirm (simulated payment) that survives anything once it has answered 200.

1. confirm.lua decides, atomically and idempotently (a retry gets the same `paid`).
2. The paid (or group_pending) row is committed to SQL through the group-commit batcher
   (orders/group_commit.py), so Redis losing its last writes cannot lose the order.
3. Only then the answer is 200. If SQL cannot commit within LIVE_CONFIRM_TIMEOUT_MS the
   answer is 503 `try_again` with `Retry-After`; a retry takes the same path.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from domain.errors import DomainError
from inventory.reservations import ReservationError, stream_of
from live.buying import announce
from live.group_buying import after_payment, after_settle_error
from live.services import Services
from orders.group_commit import CommitFailed
from orders.queries import paid_order, reservation_record

RETRY_AFTER_S = 1
EVENT_OF_STATUS = {"paid": "reservation.confirmed", "group_pending": "reservation.group_pending"}


async def confirm(services: Services, rid: str, viewer_id: str) -> dict[str, Any]:
    """The paid reservation (`group_pending` for a member of a group not yet formed),
    committed to SQL with that status; raises DomainError otherwise."""
    try:
        outcome = await services.reservations.confirm(rid, viewer_id)
    except ReservationError as exc:
        # Redis may have forgotten a confirm SQL holds (restored from an older state):
        # the viewer was told `paid`, and a retry must say so again.
        row = await paid_order(services.engine, rid)
        if row is not None and row["viewer_id"] == viewer_id:
            return row
        if exc.stock_changed and exc.reservation is not None:
            await announce(services, exc.reservation["stream_id"], exc.reservation["sku"], True)
        await after_settle_error(services, exc)
        if exc.code == "not_found" and stream_of(rid) is not None:
            # Settled and purged from Redis (LIVE_SETTLED_RETENTION_S): SQL answers.
            r = await reservation_record(services.engine, rid)
            if r is not None and r["viewer_id"] != viewer_id:
                raise ReservationError("forbidden") from None
            if r is not None and r["status"] != "reserved":
                raise ReservationError(r["status"], r) from None
        raise exc from None
    reservation = outcome.reservation
    # The event type that carries this status to SQL (docs/EVENTS.md); a retry of a
    # confirm may find the reservation refunded since, which the drainer records.
    event = EVENT_OF_STATUS.get(reservation["status"])
    committed = event is None
    if event is not None:
        raw = orjson.dumps(reservation).decode()
        try:
            await asyncio.wait_for(
                services.confirms.commit(raw, event), services.settings.confirm_timeout_ms / 1000
            )
            committed = True
        except (TimeoutError, CommitFailed):
            pass
    # The group's progress is made in Redis whatever SQL did: viewers hear of it.
    await after_payment(services, outcome)
    if not committed:
        raise DomainError(
            "try_again",
            "the payment is taken but not yet recorded; retry the confirm",
            retry_after=RETRY_AFTER_S,
        )
    return reservation
