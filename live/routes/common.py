"""Helpers shared by the route modules."""

from __future__ import annotations

from starlette.requests import Request

from domain.errors import DomainError
from inventory.streams import ENDED, LIVE, Stream
from live.services import Services
from orders.queries import stream_record


def services_of(request: Request) -> Services:
    return request.app.state.services


async def load_stream(
    request: Request, sid: str, *, must_be_live: bool = False, archived_ok: bool = False
) -> Stream:
    """The stream from Redis. A stream whose Redis state was retired (ended, drained and
    past `LIVE_STREAM_RETENTION_S`) is found in SQL: changing it is 409 `stream_ended`;
    reading it is served from SQL where the route can (`archived_ok`), else 410
    `stream_archived`."""
    services = services_of(request)
    stream = await services.streams.get(sid)
    if stream is None:
        stream = await archived_stream(services, sid)
        if stream is None:
            raise DomainError("unknown_stream", f"no stream {sid!r}")
    if must_be_live and stream.status != LIVE:
        raise DomainError("stream_ended", "the stream has ended")
    if stream.archived and not archived_ok:
        raise DomainError("stream_archived", "the stream ended and its live state was archived")
    return stream


async def archived_stream(services: Services, sid: str) -> Stream | None:
    """A retired stream as SQL keeps it (pinned sku and live counters are not kept)."""
    row = await stream_record(services.engine, sid)
    if row is None or row["ended_at"] is None:
        # Not in SQL, or never ended there: not a retired stream (a retired one was
        # drained to the end, `stream.ended` included).
        return None
    return Stream(
        id=row["id"],
        title=row["title"],
        host_name=row["host_name"],
        status=ENDED,
        pinned_sku=None,
        created_at=row["created_at"],
        ended_at=row["ended_at"],
        archived=True,
    )


def page_limit(request: Request, default: int, maximum: int) -> int:
    """`?limit=`: 1..maximum in ASCII digits (str.isdigit() also takes "²" and other
    digits int() refuses), else 400 invalid_query naming it."""
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3 and 1 <= int(raw) <= maximum):
        raise DomainError("invalid_query", f"limit: must be an integer from 1 to {maximum}")
    return int(raw)
