"""`GET /healthz`: checks Redis and the database for real, each with a time limit."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse

from live import schemas
from live.api import ApiRoute
from live.routes.common import services_of
from orders.db import ping
from orders.deadletter import dead_letter_totals
from orders.lagreport import read_report
from outage import REDIS, FailureLog

log = logging.getLogger("live.health")
CHECK_TIMEOUT_S = 2.0
# Probes fail once per request while a part is down: logged once per kind (Redis: once
# per outage, by outage.REDIS), never per request.
_db_failures = FailureLog(log, "health check of the order store")


async def _check(name: str, coro: object) -> str:
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT_S)  # type: ignore[arg-type]
    except Exception as exc:
        if name == "redis":
            REDIS.failed("/healthz", exc)
        else:
            _db_failures.failed(exc, "/healthz answers 503")
        return f"error: {type(exc).__name__}"
    if name == "db":
        _db_failures.succeeded()
    return "ok"


async def healthz(request: Request) -> JSONResponse:
    services = services_of(request)
    redis_status, db_status = await asyncio.gather(
        _check("redis", services.redis.ping()), _check("db", ping(services.engine))
    )
    ok = redis_status == "ok" and db_status == "ok"
    body: dict[str, object] = {
        "status": "ok" if ok else "degraded",
        "redis": redis_status,
        "db": db_status,
    }
    if redis_status == "ok":
        body["drain"] = await _drain_lag(request)
    return JSONResponse(body, status_code=200 if ok else 503)


async def _drain_lag(request: Request) -> dict[str, object]:
    """Events waiting in Redis for the order store, as last measured in the background
    (orders/lagreport.py): one read, whatever the number of streams. Informational: a
    backlog is not an outage (they drain when SQL is back), so it never turns the
    status to 503."""
    services = services_of(request)
    settings = services.settings.drain
    try:
        report = await asyncio.wait_for(
            read_report(services.redis, settings.group), CHECK_TIMEOUT_S
        )
    except Exception as exc:
        log.warning("drain lag check failed: %r", exc)
        return {"status": f"error: {type(exc).__name__}"}
    out: dict[str, object]
    if report is None:
        out = {"status": "unknown", "detail": "no lag report yet"}
    else:
        out = dict(report)
        waiting = int(report["lag"]) + int(report["pending"])
        stale_ms = max(3 * services.settings.drain_lag_report_ms, 30_000)
        if int(report["age_ms"]) > stale_ms:
            out["status"] = "stale"
        else:
            out["status"] = "ok" if waiting <= settings.max_lag else "behind"
    out["max_lag"] = settings.max_lag
    try:
        # Two O(1) reads, whatever the number of streams.
        out["dead_letters"] = await asyncio.wait_for(
            dead_letter_totals(services_of(request).redis), CHECK_TIMEOUT_S
        )
    except Exception as exc:
        log.warning("dead-letter count failed: %r", exc)
    return out


routes = [
    ApiRoute("/healthz", healthz, "GET", summary="Redis, SQL and drain health",
             ok={200: schemas.Health, 503: schemas.Health}),
]
