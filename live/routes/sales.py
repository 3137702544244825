"""Flash sales started by the host."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from live import schemas
from live.api import ApiRoute
from live.auth import require_host
from live.bodies import Body, read_body
from live.buying import Sku, announce
from live.routes.common import load_stream, services_of
from live.routes.streams import MAX_PRICE_CENTS, MAX_STOCK

MAX_DURATION_S = 24 * 3600


class NewSale(Body):
    sku: Sku
    price_cents: Annotated[int, Field(ge=0, le=MAX_PRICE_CENTS)]
    stock: Annotated[int, Field(ge=1, le=MAX_STOCK)]
    per_user_limit: Annotated[int | None, Field(ge=1, le=MAX_STOCK)] = None
    duration_s: Annotated[int, Field(ge=1, le=MAX_DURATION_S)]


async def start_sale(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    body = await read_body(request, NewSale)
    await load_stream(request, sid, must_be_live=True)
    services = services_of(request)
    started = await services.sales.start(  # SaleError: unknown_sku, sale_active, sold_out
        sid, body.sku, body.price_cents, body.stock, body.per_user_limit, body.duration_s
    )
    if started.ended_before is not None:
        await announce(services, sid, body.sku, True, started.ended_before)
    sale = {**started.sale, "stock_left": started.sale["stock"]}
    await services.publisher.publish(sid, "sale.started", sale)
    await announce(services, sid, body.sku, True)
    return JSONResponse(sale, status_code=201)


routes = [
    ApiRoute("/api/streams/{sid}/sales", start_sale, "POST", summary="Start a flash sale",
             auth="host", body=NewSale, ok={201: schemas.Sale},
             errors={404: "unknown_stream / unknown_sku",
                     409: "sale_active / sold_out / stream_ended"}),
]
