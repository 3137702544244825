"""Helpers shared by the route modules."""

from __future__ import annotations

from starlette.requests import Request

from live.errors import ApiError
from live.services import Services
from live.streams import LIVE, Stream


def services_of(request: Request) -> Services:
    return request.app.state.services


async def load_stream(request: Request, sid: str, *, must_be_live: bool = False) -> Stream:
    stream = await services_of(request).streams.get(sid)
    if stream is None:
        raise ApiError(404, "unknown_stream", f"no stream {sid!r}")
    if must_be_live and stream.status != LIVE:
        raise ApiError(409, "stream_ended", "the stream has ended")
    return stream
