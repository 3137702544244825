"""`GET /metrics`: Prometheus text format over every worker of this `live serve`."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from live.api import ApiRoute
from live.routes.common import services_of
from orders.lag import lag
from telemetry.exposition import CONTENT_TYPE_LATEST, exposition
from telemetry.metrics import DRAIN_LAG, DRAIN_PENDING

log = logging.getLogger("live.metrics")
LAG_TIMEOUT_S = 2.0
_failing = False  # log the first failed read of a run of them, not every scrape


async def _read_drain_lag(request: Request) -> None:
    """The drain backlog is a fact of Redis, not of a process: read it now, so any
    worker (even with `--no-drain`) reports it fresh."""
    global _failing
    try:
        out = await asyncio.wait_for(
            lag(services_of(request).redis, services_of(request).settings.drain.group),
            LAG_TIMEOUT_S,
        )
    except Exception as exc:
        # The scrape still answers; the gauges keep their last value.
        if not _failing:
            log.warning("drain lag for /metrics failed: %r", exc)
        _failing = True
        return
    _failing = False
    DRAIN_LAG.set(out["lag"])
    DRAIN_PENDING.set(out["pending"])


async def metrics(request: Request) -> Response:
    await _read_drain_lag(request)
    # Reading the workers' files is blocking I/O: off the event loop.
    body = await run_in_threadpool(exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [
    ApiRoute("/metrics", metrics, "GET", summary="Prometheus metrics of every worker",
             ok={200: None}, media_type="text/plain"),
]
