"""The host's view of the order store: orders (from SQL) and the stream's stats."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.errors import DomainError
from live import schemas
from live.api import ApiRoute
from live.auth import require_host
from live.routes.common import load_stream, page_limit, services_of
from orders.models import STATUSES
from orders.queries import MAX_PAGE, BadCursor, order_totals, orders_page
from orders.social_queries import group_totals
from realtime.stats import read_stats

DEFAULT_PAGE = 50


class OrdersQuery(BaseModel):
    """The query of `GET /api/streams/{sid}/orders` (documented; checked below)."""

    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="orders per page")] = (
        DEFAULT_PAGE
    )
    cursor: Annotated[
        str | None, Field(description="next_cursor of the previous page, as issued")
    ] = None
    status: Annotated[
        Literal[STATUSES] | None,  # type: ignore[valid-type]
        Field(description="only orders in this status"),
    ] = None


async def list_orders(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    limit = page_limit(request, DEFAULT_PAGE, MAX_PAGE)
    status = request.query_params.get("status")
    if status is not None and status not in STATUSES:
        raise DomainError(
            "invalid_query", f"status: must be one of {', '.join(STATUSES)}"
        )
    services = services_of(request)
    await load_stream(request, sid, archived_ok=True)
    try:
        orders, cursor = await orders_page(
            services.engine,
            sid,
            limit,
            cursor=request.query_params.get("cursor"),
            status=status,
            secret=services.settings.secret,
        )
    except BadCursor as exc:
        raise DomainError("invalid_query", f"cursor: {exc}") from None
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
    out.update(await group_totals(services.engine, sid))
    return JSONResponse(out)


routes = [
    ApiRoute("/api/streams/{sid}/orders", list_orders, "GET",
             summary="The stream's orders, newest first (from SQL)", auth="host",
             query=OrdersQuery, ok={200: schemas.OrderPage},
             errors={400: "invalid_limit / invalid_status / invalid_cursor",
                     404: "unknown_stream"}),
    ApiRoute("/api/streams/{sid}/stats", stream_stats, "GET",
             summary="Audience counters and order totals", auth="host",
             ok={200: schemas.Stats}, errors={404: "unknown_stream"}),
]
