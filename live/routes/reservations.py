"""Reservations over HTTP: reserve (the same `buy` as the websocket), confirm, cancel."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from domain.errors import DomainError
from inventory.reservations import Outcome, ReservationError, stream_of
from live import schemas
from live.api import ApiRoute
from live.auth import require_viewer
from live.bodies import read_json
from live.buying import Buy, announce, buy
from live.confirming import confirm
from live.group_buying import after_release, after_settle_error
from live.notify import reservation_to_viewer
from live.routes.common import services_of
from live.services import Services
from orders.queries import reservation_record
from telemetry.metrics import CONFIRMS


async def create_reservation(request: Request) -> JSONResponse:
    viewer = require_viewer(request)
    services = services_of(request)
    # The reserve script itself sends the reservation to the viewer's sockets.
    status, reservation = await buy(
        services, request.path_params["sid"], viewer, await read_json(request), notify=True
    )
    # The JSON JSONResponse would write, by orjson (the hot path: a fraction of the cost).
    return Response(orjson.dumps(reservation), status, media_type="application/json")


async def _from_sql(services: Services, rid: str, viewer_id: str) -> dict[str, Any] | None:
    """A reservation Redis purged (settled over LIVE_SETTLED_RETENTION_S ago), from SQL."""
    if stream_of(rid) is None:
        return None
    r = await reservation_record(services.engine, rid)
    if r is not None and r["viewer_id"] != viewer_id:
        raise ReservationError("forbidden")
    return r


async def _settle(request: Request, action: str) -> Any:
    """Run `cancel` for the token's viewer (confirm: live/confirming.py). An overdue
    reservation expires on the way (its stock comes back), and viewers hear of that
    before the error goes out. One Redis no longer keeps is settled: SQL answers as Redis
    would have."""
    viewer = require_viewer(request)
    services = services_of(request)
    settle = getattr(services.reservations, action)
    rid = request.path_params["rid"]
    try:
        return await settle(rid, viewer.subject)
    except ReservationError as exc:
        if exc.stock_changed and exc.reservation is not None:
            await announce(services, exc.reservation["stream_id"], exc.reservation["sku"], True)
        await after_settle_error(services, exc)
        if exc.code == "not_found":
            r = await _from_sql(services, rid, viewer.subject)
            if r is not None and r["status"] != "reserved":
                done = "paid" if action == "confirm" else "cancelled"
                if r["status"] == done:
                    return Outcome(r)
                raise ReservationError(r["status"], r) from None
        raise exc from None


async def confirm_reservation(request: Request) -> JSONResponse:
    viewer = require_viewer(request)
    services = services_of(request)
    try:
        r = await confirm(services, request.path_params["rid"], viewer.subject)
    except DomainError as exc:
        CONFIRMS.labels(exc.code).inc()
        raise
    CONFIRMS.labels(r["status"]).inc()  # paid, or group_pending until the group forms
    # `group_pending` for a group member until the group forms (then `paid`).
    answer = {**r, "order_id": r["order_id"], "status": r["status"]}
    await reservation_to_viewer(services, answer)
    return JSONResponse(answer)


async def cancel_reservation(request: Request) -> JSONResponse:
    services = services_of(request)
    outcome = await _settle(request, "cancel")
    r = outcome.reservation
    if outcome.stock_changed:
        await announce(services, r["stream_id"], r["sku"], True)
        await after_release(services, r["stream_id"], outcome)
    await reservation_to_viewer(services, r)
    return JSONResponse(r)


async def get_reservation(request: Request) -> JSONResponse:
    viewer = require_viewer(request)
    services = services_of(request)
    rid = request.path_params["rid"]
    r = await services.reservations.get(rid)
    if r is None:
        r = await _from_sql(services, rid, viewer.subject)
    if r is None:
        raise ReservationError("not_found")
    if r["viewer_id"] != viewer.subject:
        raise ReservationError("forbidden")
    return JSONResponse(r)


MINE = {404: "not_found", 403: "forbidden: another viewer's reservation"}

routes = [
    ApiRoute("/api/streams/{sid}/reservations", create_reservation, "POST",
             summary="Reserve stock (201 new; 200 the same key again)", auth="viewer",
             body=Buy, ok={200: schemas.Reservation, 201: schemas.Reservation},
             errors={404: "unknown_stream / unknown_sku",
                     409: "sold_out / limit_exceeded / sale_not_active / "
                          "idempotency_conflict / stream_ended",
                     429: "rate_limited"}),
    ApiRoute("/api/reservations/{rid}", get_reservation, "GET", summary="A reservation",
             auth="viewer", ok={200: schemas.Reservation}, errors=MINE),
    ApiRoute("/api/reservations/{rid}", cancel_reservation, "DELETE",
             summary="Cancel a reservation (its stock returns)", auth="viewer",
             ok={200: schemas.Reservation},
             errors={**MINE, 409: "paid", 410: "expired"}),
    ApiRoute("/api/reservations/{rid}/confirm", confirm_reservation, "POST",
             summary="Pay (simulated) for a reservation", auth="viewer",
             ok={200: schemas.Confirmed},
             errors={**MINE, 409: "cancelled", 410: "expired"}),
]
