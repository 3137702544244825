"""Viewer sign-up: a viewer is an id and a name inside a signed token (see live/identity.py
for who may sign viewers up)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.errors import DomainError
from inventory.streams import new_id
from live import schemas
from live.api import SIGNUP_ERRORS, ApiRoute
from live.bodies import Body, read_body
from live.identity import authorize_signup, viewer_id_for
from live.referral_binding import bind
from live.routes.common import services_of


class NewViewer(Body):
    name: Annotated[str, Field(min_length=1, max_length=50)]
    # The platform's own id of the person (admin-key mode): always the same viewer id.
    external_id: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    ref: Annotated[str | None, Field(max_length=64)] = None  # a referral code


async def create_viewer(request: Request) -> JSONResponse:
    services = services_of(request)
    await authorize_signup(request, services, "viewers")
    body = await read_body(request, NewViewer)
    if services.settings.admin_key is not None:
        if body.external_id is None:
            raise DomainError("invalid_body", "external_id: required with the admin key")
        viewer_id = viewer_id_for(services.settings.secret, body.external_id)
    elif body.external_id is not None:
        # Open mode: anyone could claim another person's external id.
        raise DomainError("invalid_body", "external_id: only accepted with LIVE_ADMIN_KEY")
    else:
        viewer_id = new_id("v")
    ttl = services.settings.viewer_token_ttl_s
    token = services.signer.issue("viewer", viewer_id, ttl, name=body.name)
    out = {"viewer_id": viewer_id, "name": body.name, "token": token}
    if body.ref:
        # Bound to the code's owner in the code's stream. A new viewer cannot close a
        # cycle; an unknown code is 404 and the token is not handed out.
        out["referral"] = await bind(services, viewer_id, body.ref)
    return JSONResponse(out, status_code=201)


routes = [
    ApiRoute("/api/viewers", create_viewer, "POST", summary="Sign up a viewer",
             body=NewViewer, ok={201: schemas.Viewer},
             errors={**SIGNUP_ERRORS, 404: "unknown_referral: no such referral code"}),
]
