"""`GET /api/streams`: the public directory of streams (the start page lists it)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.errors import DomainError
from live import directory, schemas
from live.api import ApiRoute
from live.routes.common import page_limit, services_of

DEFAULT_PAGE = 20
MAX_PAGE = 200


class DirectoryQuery(BaseModel):
    """The query of `GET /api/streams` (documented; checked below)."""

    limit: Annotated[int, Field(ge=1, le=MAX_PAGE, description="streams per page")] = (
        DEFAULT_PAGE
    )
    cursor: Annotated[
        str | None, Field(description="next_cursor of the previous page, as issued")
    ] = None


async def list_streams(request: Request) -> JSONResponse:
    """Public fields only (no token, no host-only figure), live streams first."""
    limit = page_limit(request, DEFAULT_PAGE, MAX_PAGE)
    services = services_of(request)
    secret = services.settings.secret
    raw = request.query_params.get("cursor")
    cursor = None
    if raw is not None:
        try:
            cursor = directory.decode_cursor(secret, raw)
        except directory.BadCursor:
            raise DomainError("invalid_query", "cursor: not one this service issued") from None
    await directory.backfill(services.redis)
    streams, next_cursor = await directory.page(services.redis, secret, limit, cursor)
    return JSONResponse(
        {"streams": streams, "next_cursor": next_cursor},
        headers={"Cache-Control": "no-store"},
    )


routes = [
    ApiRoute("/api/streams", list_streams, "GET",
             summary="The public directory of streams, live ones first",
             query=DirectoryQuery, ok={200: schemas.StreamDirectory},
             errors={400: "invalid_query: limit or cursor"}),
]
