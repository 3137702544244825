"""The host refunds a paid order: its unit returns to stock once; again is a no-op."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from inventory.refunds import RefundError, reservation_of
from inventory.reservations import stream_of
from live import schemas
from live.api import ApiRoute
from live.auth import require_host
from live.buying import announce
from live.errors import ApiError
from live.group_buying import announce_progress
from live.routes.common import services_of

ERRORS = {
    "not_found": (404, "no such order in this stream"),
    "not_paid": (409, "only a paid order can be refunded"),
}


async def refund_order(request: Request) -> JSONResponse:
    order_id = request.path_params["order_id"]
    rid = reservation_of(order_id)
    sid = stream_of(rid) if rid else None
    if sid is None:
        raise ApiError(404, "not_found", "no such order")
    require_host(request, sid)
    services = services_of(request)
    try:
        refund = await services.refunds.refund(order_id, sid)
    except RefundError as exc:
        status, detail = ERRORS.get(exc.code, (409, exc.code))
        raise ApiError(status, exc.code, detail) from None
    r = refund.reservation
    if refund.refunded_now:
        await announce(services, sid, r["sku"], True)
        await announce_progress(services, sid, refund.groups_changed)
    return JSONResponse(
        {
            "order_id": order_id,
            "status": "refunded",
            "refunded_at": r.get("refunded_at"),
            "reservation": r,
        }
    )


routes = [
    ApiRoute("/api/orders/{order_id}/refund", refund_order, "POST",
             summary="Refund a paid order (host)", auth="host", ok={200: schemas.Refund},
             errors={404: "not_found", 409: "not_paid"}),
]
