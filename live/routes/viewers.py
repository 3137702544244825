"""Viewer sign-up: a viewer is an id and a name inside a signed token."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from live.bodies import Body, read_body
from live.routes.common import services_of
from live.streams import new_id


class NewViewer(Body):
    name: Annotated[str, Field(min_length=1, max_length=50)]


async def create_viewer(request: Request) -> JSONResponse:
    body = await read_body(request, NewViewer)
    services = services_of(request)
    viewer_id = new_id("v")
    ttl = services.settings.viewer_token_ttl_s
    token = services.signer.issue("viewer", viewer_id, ttl, name=body.name)
    return JSONResponse(
        {"viewer_id": viewer_id, "name": body.name, "token": token}, status_code=201
    )


routes = [Route("/api/viewers", create_viewer, methods=["POST"])]
