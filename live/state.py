"""The whole visible state of a stream: the body of `GET /api/streams/{id}` and of the
websocket `hello` message."""

from __future__ import annotations

from typing import Any

from inventory.streams import Stream
from live.services import Services
from orders.queries import archived_products
from realtime.stats import read_stats


async def stream_state(services: Services, stream: Stream) -> dict[str, Any]:
    if stream.archived:
        return await archived_state(services, stream)
    products = await services.catalog.list_with_stock(stream.id)
    stats = await read_stats(services.redis, stream.id)
    state = stream.to_json()
    state.update(
        products=products,
        sales=await services.sales.active(stream.id),
        viewers=stats["viewers"],
        likes=stats["likes"],  # the total, for a page that joins late
        seq=await services.publisher.last_seq(stream.id),
    )
    return state


async def archived_state(services: Services, stream: Stream) -> dict[str, Any]:
    """A retired stream, read-only from SQL: the same shape, with `archived: true`, no
    running sale, no viewers, and `seq` null (the broadcast history went with Redis)."""
    state = stream.to_json()
    state.update(
        products=await archived_products(services.engine, stream.id),
        sales=[],
        viewers=0,
        likes=0,
        seq=None,
    )
    return state
