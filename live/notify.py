"""Telling a viewer's open sockets what an HTTP request did to its reservation."""

from __future__ import annotations

import logging
from typing import Any

from live.services import Services
from realtime.personal import send_to_viewer

log = logging.getLogger("live.http")


async def reservation_to_viewer(services: Services, reservation: dict[str, Any]) -> None:
    """A `reservation` message to the buyer's sockets on every process. The change is
    made already: a failure here is logged, never turned into a failed request."""
    try:
        await send_to_viewer(
            services.redis,
            reservation["stream_id"],
            reservation["viewer_id"],
            "reservation",
            reservation,
        )
    except Exception:
        log.exception("telling viewer of reservation %s failed", reservation.get("id"))
