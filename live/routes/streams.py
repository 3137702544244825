"""Streams, products, pinning, host messages and the end of a stream."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.errors import DomainError
from inventory.catalog import Product, ProductExists, TooManyProducts
from inventory.streams import LIVE, meta_key
from live import directory, schemas
from live.api import SIGNUP_ERRORS, ApiRoute
from live.auth import require_host
from live.bodies import Body, read_body
from live.buying import end_sales_of_stream
from live.group_buying import end_groups_of_stream
from live.identity import authorize_signup
from live.routes.common import load_stream, services_of
from live.state import stream_state
from rediskit.codec import now_ms

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
    services = services_of(request)
    await authorize_signup(request, services, "streams")
    body = await read_body(request, NewStream)
    stream = await services.streams.create(body.title, body.host_name)
    token = services.signer.issue(
        "host", stream.id, services.settings.host_token_ttl_s, name=body.host_name
    )
    await directory.listed(services.redis, stream.id, stream.created_at)
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
        raise DomainError("product_exists", f"sku {body.sku!r} is already listed") from None
    except TooManyProducts:
        limit = services_of(request).catalog.max_products
        raise DomainError(
            "too_many_products", f"a stream lists at most {limit} products"
        ) from None
    return JSONResponse(product.to_json(), status_code=201)


async def pin_product(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    body = await read_body(request, Pin)
    await load_stream(request, sid, must_be_live=True)
    services = services_of(request)
    product = await services.catalog.get(sid, body.sku)
    if product is None:
        raise DomainError("unknown_sku", f"no product {body.sku!r} in this stream")
    await services.streams.pin(sid, body.sku)
    data = {"sku": body.sku, "product": product.to_json()}
    seq = await services.publisher.publish(sid, "product.pinned", data)
    return JSONResponse({"pinned_sku": body.sku, "seq": seq})


async def post_message(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    claims = require_host(request, sid)
    body = await read_body(request, HostMessage)
    data = {"text": body.text, "host_name": claims.name}
    # The script checks that the stream is live as it publishes (one round trip); only a
    # refusal reads the record, to say why (unknown, ended, archived).
    seq = await services_of(request).publisher.publish_if_live(
        sid, "host.message", data, meta_key(sid)
    )
    if seq is None:
        await load_stream(request, sid, must_be_live=True)
        raise DomainError("stream_ended", "the stream has ended")
    return JSONResponse({"seq": seq}, status_code=202)


async def end_stream(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    stream = await load_stream(request, sid, archived_ok=True)
    if stream.archived:  # ended long ago and retired: ending again is a no-op
        return JSONResponse(stream.to_json())
    services = services_of(request)
    if stream.status == LIVE:
        # Running sales end first (`sale.ended`, reason stream_ended), so viewers see
        # them close before the stream does (`stream.ended` closes their sockets).
        await end_sales_of_stream(services, sid)
        # Its group buys close and open groups fail (refunds, `group.failed`) too.
        await end_groups_of_stream(services, sid)
    # The end and its `stream.ended` broadcast are one Redis script: a process that dies
    # after this line has told every viewer already. Ending again is a no-op.
    ended = await services.streams.end(sid)
    if ended is not None:
        stream = ended
    elif stream.status == LIVE:
        # Another request ended it between our read and our end: answer its result.
        stream = await load_stream(request, sid, archived_ok=True)
    if stream.ended_at is not None:  # again on a repeat: repairs a crash before this line
        await directory.ended(services.redis, sid, stream.ended_at)
    return JSONResponse(stream.to_json())


UNKNOWN = {404: "unknown_stream"}
CHANGE = {404: "unknown_stream", 409: "stream_ended"}

routes = [
    ApiRoute("/api/streams", create_stream, "POST", summary="Create a stream (go live)",
             body=NewStream, ok={201: schemas.StreamCreated}, errors=SIGNUP_ERRORS),
    ApiRoute("/api/streams/{sid}", get_stream, "GET", summary="The whole state of a stream",
             ok={200: schemas.StreamState}, errors=UNKNOWN),
    ApiRoute("/api/streams/{sid}/products", add_product, "POST", summary="List a product",
             auth="host", body=NewProduct, ok={201: schemas.Product},
             errors={**CHANGE, 409: "product_exists / stream_ended"}),
    ApiRoute("/api/streams/{sid}/pin", pin_product, "POST", summary="Pin a product",
             auth="host", body=Pin, ok={200: schemas.Pinned},
             errors={**CHANGE, 404: "unknown_stream / unknown_sku"}),
    ApiRoute("/api/streams/{sid}/messages", post_message, "POST",
             summary="Broadcast a host message", auth="host", body=HostMessage,
             ok={202: schemas.Seq}, errors=CHANGE),
    ApiRoute("/api/streams/{sid}/end", end_stream, "POST", summary="End the stream",
             auth="host", ok={200: schemas.Stream}, errors=UNKNOWN),
]
