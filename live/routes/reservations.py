"""Reservations over HTTP: reserve (the same `buy` as the websocket), confirm, cancel."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from inventory.reservations import ReservationError
from live.auth import require_viewer
from live.bodies import read_json
from live.buying import announce, api_error, buy
from live.routes.common import services_of


async def create_reservation(request: Request) -> JSONResponse:
    viewer = require_viewer(request)
    status, reservation = await buy(
        services_of(request), request.path_params["sid"], viewer, await read_json(request)
    )
    return JSONResponse(reservation, status_code=status)


async def _settle(request: Request, action: str) -> Any:
    """Run `confirm` or `cancel` for the token's viewer. An overdue reservation expires on
    the way (its stock comes back), and viewers hear of that before the error goes out."""
    viewer = require_viewer(request)
    services = services_of(request)
    settle = getattr(services.reservations, action)
    try:
        return await settle(request.path_params["rid"], viewer.subject)
    except ReservationError as exc:
        if exc.stock_changed and exc.reservation is not None:
            await announce(services, exc.reservation["stream_id"], exc.reservation["sku"], True)
        raise api_error(exc) from None


async def confirm_reservation(request: Request) -> JSONResponse:
    r = (await _settle(request, "confirm")).reservation
    return JSONResponse({**r, "order_id": r["order_id"], "status": "paid"})


async def cancel_reservation(request: Request) -> JSONResponse:
    services = services_of(request)
    outcome = await _settle(request, "cancel")
    r = outcome.reservation
    if outcome.stock_changed:
        await announce(services, r["stream_id"], r["sku"], True)
    return JSONResponse(r)


async def get_reservation(request: Request) -> JSONResponse:
    viewer = require_viewer(request)
    r = await services_of(request).reservations.get(request.path_params["rid"])
    if r is None:
        raise api_error(ReservationError("not_found"))
    if r["viewer_id"] != viewer.subject:
        raise api_error(ReservationError("forbidden"))
    return JSONResponse(r)


routes = [
    Route("/api/streams/{sid}/reservations", create_reservation, methods=["POST"]),
    Route("/api/reservations/{rid}", get_reservation, methods=["GET"]),
    Route("/api/reservations/{rid}", cancel_reservation, methods=["DELETE"]),
    Route("/api/reservations/{rid}/confirm", confirm_reservation, methods=["POST"]),
]
