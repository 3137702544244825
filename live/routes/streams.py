"""Streams, products, pinning, host messages and the end of a stream."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from inventory.catalog import Product, ProductExists
from live.auth import require_host
from live.bodies import Body, read_body
from live.buying import end_sales_of_stream
from live.errors import ApiError
from live.routes.common import load_stream, services_of
from live.state import stream_state
from realtime.publish import now_ms

Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
MAX_PRICE_CENTS = 100_000_000_00  # one hundred million in currency units
MAX_STOCK = 10_000_000


class NewStream(Body):
    title: Annotated[str, Field(min_length=1, max_length=200)]
    host_name: Annotated[str, Field(min_length=1, max_length=100)]


class NewProduct(Body):
    sku: Sku
    title: Annotated[str, Field(min_length=1, max_length=200)]
    price_cents: Annotated[int, Field(ge=0, le=MAX_PRICE_CENTS)]
    stock: Annotated[int, Field(ge=0, le=MAX_STOCK)]
    per_user_limit: Annotated[int | None, Field(ge=1, le=MAX_STOCK)] = None


class Pin(Body):
    sku: Sku


class HostMessage(Body):
    text: Annotated[str, Field(min_length=1, max_length=1000)]


async def create_stream(request: Request) -> JSONResponse:
    body = await read_body(request, NewStream)
    services = services_of(request)
    stream = await services.streams.create(body.title, body.host_name)
    token = services.signer.issue(
        "host", stream.id, services.settings.host_token_ttl_s, name=body.host_name
    )
    out = stream.to_json()
    out.update(host_token=token, ws_path=f"/ws/streams/{stream.id}")
    return JSONResponse(out, status_code=201)


async def get_stream(request: Request) -> JSONResponse:
    stream = await load_stream(request, request.path_params["sid"], archived_ok=True)
    return JSONResponse(await stream_state(services_of(request), stream))


async def add_product(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    body = await read_body(request, NewProduct)
    await load_stream(request, sid, must_be_live=True)
    product = Product(
        stream_id=sid,
        sku=body.sku,
        title=body.title,
        price_cents=body.price_cents,
        stock=body.stock,
        per_user_limit=body.per_user_limit,
        created_at=now_ms(),
    )
    try:
        await services_of(request).catalog.add(product)
    except ProductExists:
        raise ApiError(409, "product_exists", f"sku {body.sku!r} is already listed") from None
    return JSONResponse(product.to_json(), status_code=201)


async def pin_product(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    body = await read_body(request, Pin)
    await load_stream(request, sid, must_be_live=True)
    services = services_of(request)
    product = await services.catalog.get(sid, body.sku)
    if product is None:
        raise ApiError(404, "unknown_sku", f"no product {body.sku!r} in this stream")
    await services.streams.pin(sid, body.sku)
    data = {"sku": body.sku, "product": product.to_json()}
    seq = await services.publisher.publish(sid, "product.pinned", data)
    return JSONResponse({"pinned_sku": body.sku, "seq": seq})


async def post_message(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    claims = require_host(request, sid)
    body = await read_body(request, HostMessage)
    await load_stream(request, sid, must_be_live=True)
    data = {"text": body.text, "host_name": claims.name}
    seq = await services_of(request).publisher.publish(sid, "host.message", data)
    return JSONResponse({"seq": seq}, status_code=202)


async def end_stream(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    stream = await load_stream(request, sid, archived_ok=True)
    if stream.archived:  # ended long ago and retired: ending again is a no-op
        return JSONResponse(stream.to_json())
    services = services_of(request)
    ended = await services.streams.end(sid)
    if ended is not None:  # the first end broadcasts; repeating it is harmless
        # Running sales end first (`sale.ended`, reason stream_ended), so viewers see
        # them close before the stream does.
        await end_sales_of_stream(services, sid)
        await services.publisher.publish(sid, "stream.ended", {"ended_at": ended.ended_at})
        stream = ended
    return JSONResponse(stream.to_json())


routes = [
    Route("/api/streams", create_stream, methods=["POST"]),
    Route("/api/streams/{sid}", get_stream, methods=["GET"]),
    Route("/api/streams/{sid}/products", add_product, methods=["POST"]),
    Route("/api/streams/{sid}/pin", pin_product, methods=["POST"]),
    Route("/api/streams/{sid}/messages", post_message, methods=["POST"]),
    Route("/api/streams/{sid}/end", end_stream, methods=["POST"]),
]
