"""The host refunds a paid order: its unit returns to stock once; again is a no-op."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.errors import DomainError
from inventory.refunds import reservation_of
from inventory.reservations import stream_of
from live import schemas
from live.api import ApiRoute
from live.auth import require_host
from live.buying import announce
from live.group_buying import announce_progress
from live.routes.common import services_of


async def refund_order(request: Request) -> JSONResponse:
    order_id = request.path_params["order_id"]
    rid = reservation_of(order_id)
    sid = stream_of(rid) if rid else None
    if sid is None:
        raise DomainError("not_found", "no such order")
    require_host(request, sid)
    services = services_of(request)
    refund = await services.refunds.refund(order_id, sid)  # RefundError: not_found, not_paid
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
