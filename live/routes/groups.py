"""Group buys over HTTP: the host's offers, the viewers' groups."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from inventory.groups import (
    MAX_SIZE,
    MAX_WINDOW_S,
    MIN_SIZE,
    MIN_WINDOW_S,
    GroupError,
    public_group,
    stream_of_group_buy,
)
from live import schemas
from live.api import ApiRoute
from live.auth import require_host, require_viewer
from live.bodies import Body, read_body, read_json
from live.buying import Sku
from live.group_buying import GroupRequest, find_group, join_group, open_group
from live.routes.common import load_stream, services_of
from live.routes.streams import MAX_PRICE_CENTS, MAX_STOCK


class NewGroupBuy(Body):
    sku: Sku
    group_price_cents: Annotated[int, Field(ge=0, le=MAX_PRICE_CENTS)]
    group_size: Annotated[int, Field(ge=MIN_SIZE, le=MAX_SIZE)]
    window_s: Annotated[int, Field(ge=MIN_WINDOW_S, le=MAX_WINDOW_S)]
    stock: Annotated[int | None, Field(ge=1, le=MAX_STOCK)] = None


async def create_group_buy(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    body = await read_body(request, NewGroupBuy)
    await load_stream(request, sid, must_be_live=True)
    services = services_of(request)
    try:
        gb = await services.groups.create_buy(
            sid, body.sku, body.group_price_cents, body.group_size, body.window_s, body.stock
        )
    except GroupError as exc:
        raise exc from None
    await services.publisher.publish(sid, "groupbuy.started", gb)
    return JSONResponse(gb, status_code=201)


async def list_group_buys(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    await load_stream(request, sid)
    return JSONResponse({"group_buys": await services_of(request).groups.list_buys(sid)})


async def close_group_buy(request: Request) -> JSONResponse:
    gbid = request.path_params["gbid"]
    sid = stream_of_group_buy(gbid)
    if sid is None:
        raise GroupError("unknown_group_buy")
    require_host(request, sid)
    services = services_of(request)
    try:
        gb, closed_now = await services.groups.close_buy(gbid)
    except GroupError:
        raise GroupError("unknown_group_buy") from None
    if closed_now:
        await services.publisher.publish(sid, "groupbuy.closed", gb)
    return JSONResponse(gb)


async def open_group_route(request: Request) -> JSONResponse:
    viewer = require_viewer(request)
    status, out = await open_group(
        services_of(request), request.path_params["gbid"], viewer, await read_json(request)
    )
    return JSONResponse(out, status_code=status)


async def join_group_route(request: Request) -> JSONResponse:
    viewer = require_viewer(request)
    status, out = await join_group(
        services_of(request), request.path_params["ref"], viewer, await read_json(request)
    )
    return JSONResponse(out, status_code=status)


async def get_group(request: Request) -> JSONResponse:
    g = await find_group(services_of(request), request.path_params["ref"])
    return JSONResponse(public_group(g))


GROUP_ERRORS = {404: "unknown_group_buy / unknown_group / unknown_sku / unknown_stream",
                409: "group_full / group_closed / already_member / sold_out / "
                     "limit_exceeded / idempotency_conflict / stream_ended",
                410: "stream_archived", 429: "rate_limited"}

routes = [
    ApiRoute("/api/streams/{sid}/group-buys", create_group_buy, "POST",
             summary="Offer a group buy", auth="host", body=NewGroupBuy,
             ok={201: schemas.GroupBuy}, errors=GROUP_ERRORS),
    ApiRoute("/api/streams/{sid}/group-buys", list_group_buys, "GET",
             summary="The stream's group buys", ok={200: schemas.GroupBuyList},
             errors=GROUP_ERRORS),
    ApiRoute("/api/group-buys/{gbid}", close_group_buy, "DELETE", summary="Close a group buy",
             auth="host", ok={200: schemas.GroupBuy}, errors=GROUP_ERRORS),
    ApiRoute("/api/group-buys/{gbid}/groups", open_group_route, "POST",
             summary="Open a group (and reserve for it)", auth="viewer", body=GroupRequest,
             ok={200: schemas.Group, 201: schemas.Group}, errors=GROUP_ERRORS),
    ApiRoute("/api/groups/{ref}/join", join_group_route, "POST", summary="Join a group",
             auth="viewer", body=GroupRequest, ok={200: schemas.Group, 201: schemas.Group},
             errors=GROUP_ERRORS),
    ApiRoute("/api/groups/{ref}", get_group, "GET", summary="A group",
             ok={200: schemas.Group}, errors=GROUP_ERRORS),
]
