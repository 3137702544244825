"""`GET /healthz`: checks Redis and the database for real, each with a time limit."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from live.routes.common import services_of
from orders.db import ping
from orders.drain import lag

log = logging.getLogger("live.health")
CHECK_TIMEOUT_S = 2.0


async def _check(name: str, coro: object) -> str:
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT_S)  # type: ignore[arg-type]
    except Exception as exc:
        log.warning("health check of %s failed: %r", name, exc)
        return f"error: {type(exc).__name__}"
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
    """Events waiting in Redis for the order store. Informational: a backlog is not an
    outage (they drain when SQL is back), so it never turns the status to 503."""
    settings = request.app.state.drain_settings
    try:
        out: dict[str, object] = dict(
            await asyncio.wait_for(
                lag(services_of(request).redis, settings.group), CHECK_TIMEOUT_S
            )
        )
    except Exception as exc:
        log.warning("drain lag check failed: %r", exc)
        return {"status": f"error: {type(exc).__name__}"}
    waiting = int(out["lag"]) + int(out["pending"])  # type: ignore[call-overload]
    out["status"] = "ok" if waiting <= settings.max_lag else "behind"
    out["max_lag"] = settings.max_lag
    return out


routes = [Route("/healthz", healthz, methods=["GET"])]
