"""One place where a viewer's buy becomes a reservation, for HTTP and the websocket alike.

(Interface agreed between the realtime and inventory work; the inventory work fills it.)
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from pydantic import Field

from domain.errors import DomainError
from inventory.reservations import MAX_KEY_LEN, MAX_QTY, ReservationError
from inventory.sweeper import Sweeper
from live.bodies import Body, parse_model
from live.services import Services
from live.tokens import Claims
from telemetry.metrics import RESERVATIONS, RESERVE_DURATION

log = logging.getLogger("live.inventory")
_OUTCOMES: dict[str, Any] = {}  # outcome -> its RESERVATIONS child (labels() costs a lookup)

Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]

class Buy(Body):
    sku: Sku
    qty: Annotated[int, Field(ge=1, le=MAX_QTY)]
    key: Annotated[str, Field(min_length=1, max_length=MAX_KEY_LEN)]
    # Optional: buy only at this flash sale's price (sale_not_active once it is over).
    sale_id: Annotated[str | None, Field(max_length=64)] = None


async def announce(
    services: Services,
    sid: str,
    sku: str,
    stock_changed: bool,
    ended_sale: dict[str, Any] | None = None,
) -> None:
    """Tell the viewers what a change did. The change is made (and its event recorded)
    already, so a failure here is logged, never turned into a failed request."""
    try:
        if ended_sale is not None:
            log.info(
                "sale %s of %s/%s ended: %s, %d sold",
                ended_sale["id"],
                sid,
                sku,
                ended_sale["reason"],
                ended_sale["sold"],
                extra={"stream": sid, "sale": ended_sale["id"], "sku": sku},
            )
            await services.publisher.publish(sid, "sale.ended", ended_sale)
        if stock_changed or ended_sale is not None:
            await services.stock_feed.changed(sid, sku)
    except Exception:
        log.exception("announcing a stock change of %s/%s failed", sid, sku,
                      extra={"stream": sid, "sku": sku})


async def buy(
    services: Services, sid: str, viewer: Claims, body: Any, notify: bool = False
) -> tuple[int, dict]:
    """`reserve`, counted by outcome and timed (HTTP and websocket buys alike)."""
    start = time.perf_counter()
    outcome = "error"  # an unexpected failure (say Redis down)
    try:
        status, reservation = await reserve(services, sid, viewer, body, notify)
        outcome = "created" if status == 201 else "replayed"
        return status, reservation
    except DomainError as exc:
        outcome = exc.code
        raise
    finally:
        child = _OUTCOMES.get(outcome)
        if child is None:
            child = _OUTCOMES[outcome] = RESERVATIONS.labels(outcome)
        child.inc()
        RESERVE_DURATION.observe(time.perf_counter() - start)


async def reserve(
    services: Services, sid: str, viewer: Claims, body: Any, notify: bool = False
) -> tuple[int, dict]:
    """Reserve `body = {"sku", "qty", "key"}` for `viewer` in stream `sid`.

    Returns (HTTP status, reservation JSON): 201 for a new reservation, 200 for the same
    idempotency key again. Raises DomainError with the protocol's code otherwise
    (invalid_body, unknown_stream, stream_ended, unknown_sku, sold_out, limit_exceeded,
    sale_not_active, idempotency_conflict, rate_limited). `notify`: the reservation also
    goes to the viewer's open sockets (an HTTP buy; a websocket buy is answered there).
    The stream's own state (unknown, ended) is checked by the reserve script itself
    (`Reservations(check_stream=True)`), one round trip in all.
    """
    if viewer.role != "viewer":
        raise DomainError("forbidden", "buying needs a viewer token")
    req = parse_model(Buy, body)
    try:
        outcome = await services.reservations.reserve(
            sid, viewer.subject, req.sku, req.qty, req.key, req.sale_id, notify
        )
    except ReservationError as exc:
        if exc.ended_sale is not None:
            await announce(services, sid, req.sku, False, exc.ended_sale)
        raise
    await announce(services, sid, req.sku, outcome.stock_changed, outcome.ended_sale)
    return (201 if outcome.created else 200), outcome.reservation


def make_sweeper(services: Services) -> Sweeper:
    """The process's expiry and sale-end sweeper, announcing through the realtime hub."""

    async def on_sale_ended(sid: str, sale: dict[str, Any]) -> None:
        await services.publisher.publish(sid, "sale.ended", sale)

    return Sweeper(
        services.redis,
        services.reservations,
        services.sales,
        on_stock=services.stock_feed.changed,
        on_sale_ended=on_sale_ended,
    )


async def end_sales_of_stream(services: Services, sid: str) -> list[dict[str, Any]]:
    """End the stream's running flash sales (reason `stream_ended`) and announce each;
    call it when the stream ends. Safe to call from several processes at once."""
    ended = await services.sales.end_all(sid)
    for sale in ended:
        await announce(services, sid, sale["sku"], True, sale)
    return ended
