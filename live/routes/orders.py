"""The host's view of the order store: orders (from SQL) and the stream's stats."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from live.auth import require_host
from live.errors import ApiError
from live.routes.common import load_stream, services_of
from orders.models import STATUSES
from orders.queries import MAX_PAGE, BadCursor, order_totals, orders_page
from realtime.stats import read_stats

DEFAULT_PAGE = 50


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise ApiError(400, "invalid_limit", f"limit must be an integer 1..{MAX_PAGE}")
    return int(raw)


async def list_orders(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    limit = _limit(request)
    status = request.query_params.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, "invalid_status", f"status must be one of {', '.join(STATUSES)}")
    await load_stream(request, sid, archived_ok=True)
    try:
        orders, cursor = await orders_page(
            services_of(request).engine,
            sid,
            limit,
            cursor=request.query_params.get("cursor"),
            status=status,
        )
    except BadCursor as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from None
    return JSONResponse({"orders": orders, "next_cursor": cursor})


async def stream_stats(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    await load_stream(request, sid, archived_ok=True)
    services = services_of(request)
    # Audience counters from the realtime hub (Redis; gone with a retired stream's live
    # state, so zeros then), order figures from SQL.
    out = await read_stats(services.redis, sid)
    out.update(await order_totals(services.engine, sid))
    return JSONResponse(out)


routes = [
    Route("/api/streams/{sid}/orders", list_orders, methods=["GET"]),
    Route("/api/streams/{sid}/stats", stream_stats, methods=["GET"]),
]
