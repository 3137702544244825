"""Referral commissions over HTTP: rates, links, bindings, the ledger and the report."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from inventory.referrals import MAX_LEVEL_BPS, ReferralError, stream_of_code
from live import schemas
from live.api import ApiRoute
from live.auth import require_host, require_viewer
from live.bodies import Body, read_body
from live.referral_binding import bind
from live.routes.common import load_stream, services_of
from orders.social_queries import referral_report, viewer_commissions

Bps = Annotated[int, Field(ge=0, le=MAX_LEVEL_BPS)]


class Rates(Body):
    """Commission rates in basis points; together at most 5000 (else 400 invalid_rates)."""

    level1_bps: Bps
    level2_bps: Bps


class BindBody(Body):
    ref: Annotated[str, Field(min_length=1, max_length=64)]


async def set_commission(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    body = await read_body(request, Rates)
    await load_stream(request, sid, must_be_live=True)
    try:
        rates = await services_of(request).referrals.set_rates(
            sid, body.level1_bps, body.level2_bps
        )
    except ReferralError as exc:
        raise exc from None
    return JSONResponse(rates)


async def get_commission(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    await load_stream(request, sid)
    return JSONResponse(await services_of(request).referrals.rates(sid))


async def referral_link(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    viewer = require_viewer(request)
    await load_stream(request, sid)
    code = await services_of(request).referrals.link(sid, viewer.subject)
    return JSONResponse(link_json(str(request.base_url), sid, code), status_code=201)


def link_json(base_url: str, sid: str, code: str) -> dict[str, str]:
    return {"code": code, "url": f"{base_url.rstrip('/')}/s/{sid}?ref={code}", "stream_id": sid}


async def bind_referral(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    viewer = require_viewer(request)
    body = await read_body(request, BindBody)
    await load_stream(request, sid)
    if stream_of_code(body.ref) != sid:
        raise ReferralError("unknown_referral")
    return JSONResponse(await bind(services_of(request), viewer.subject, body.ref))


async def my_commissions(request: Request) -> JSONResponse:
    viewer = require_viewer(request)
    return JSONResponse(await viewer_commissions(services_of(request).engine, viewer.subject))


async def stream_referrals(request: Request) -> JSONResponse:
    sid = request.path_params["sid"]
    require_host(request, sid)
    await load_stream(request, sid, archived_ok=True)
    services = services_of(request)
    out: dict[str, object] = {"referrers": await referral_report(services.engine, sid)}
    stream = await services.streams.get(sid)
    if stream is not None:
        out.update(await services.referrals.rates(sid))
    return JSONResponse(out)


REFERRAL_ERRORS = {404: "unknown_stream / unknown_referral", 409: "stream_ended / conflict",
                   410: "stream_archived"}

routes = [
    ApiRoute("/api/streams/{sid}/commission", set_commission, "PUT",
             summary="Set the referral commission", auth="host", body=Rates,
             ok={200: schemas.Commission}, errors=REFERRAL_ERRORS),
    ApiRoute("/api/streams/{sid}/commission", get_commission, "GET",
             summary="The referral commission", ok={200: schemas.Commission},
             errors=REFERRAL_ERRORS),
    ApiRoute("/api/streams/{sid}/referral-links", referral_link, "POST",
             summary="A viewer's referral link", auth="viewer",
             ok={201: schemas.ReferralLink}, errors=REFERRAL_ERRORS),
    ApiRoute("/api/streams/{sid}/referrals/bind", bind_referral, "POST",
             summary="Bind the viewer to a referrer", auth="viewer", body=BindBody,
             ok={200: schemas.ReferralBound}, errors=REFERRAL_ERRORS),
    ApiRoute("/api/streams/{sid}/referrals", stream_referrals, "GET",
             summary="The stream's referrals", auth="host", ok={200: schemas.ReferralList},
             errors=REFERRAL_ERRORS),
    ApiRoute("/api/me/commissions", my_commissions, "GET", summary="My commissions",
             auth="viewer", ok={200: schemas.MyCommissions}),
]
