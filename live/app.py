"""The Starlette application and its lifespan: what one service process owns."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from live.buying import make_sweeper
from live.config import Settings
from live.embedded_redis import EmbeddedRedis
from live.errors import EXCEPTION_HANDLERS
from live.group_buying import announce_progress, group_sweep
from live.http_metrics import HttpMetrics
from live.hub_wiring import build_hub
from live.lifetime import bind_worker_to_supervisor
from live.openapi import routes as openapi_routes
from live.pages import routes as pages
from live.routes import (
    directory,
    groups,
    health,
    metrics,
    moderation,
    orders,
    referrals,
    refunds,
    reservations,
    sales,
    streams,
    viewers,
)
from live.services import Services
from orders.db import create_schema, make_engine
from orders.drain import Drainer
from orders.lagreport import LagReporter
from orders.runner import DrainerTask
from outage import REDIS
from rediskit.client import redis_client
from telemetry.redis_timing import timed_redis

log = logging.getLogger("live.app")


# The collector, once a worker has started everything. What exists by then (modules,
# SQLAlchemy's and pydantic's tables, the app and its services) lives as long as the
# process, so gc.freeze() takes it out of every later collection; and the youngest
# generation is collected every 7,000 allocations instead of 700, each older one after 20
# collections of the one below it instead of 10. In a burst of 2,000 confirms
# (bench/confirm.py, PostgreSQL) the collector's time in one worker fell from 0.57 s to
# 0.11 s and the service's CPU per confirm from 0.80 to 0.60-0.64 ms. At most 7,000 young
# objects wait for a collection: no memory to speak of.
GC_THRESHOLDS = (7000, 20, 20)


def tune_gc() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_app(
    settings: Settings | None = None,
    *,
    schema_ready: bool = False,
    supervisor_pid: int | None = None,
) -> Starlette:
    """The application of one service process. `live serve` passes the settings it
    parsed (live/workers.py), whether it already created the schema (so that several
    workers do not race to create the same tables), and its own pid when it supervises
    workers; without settings (`uvicorn --factory live.app:create_app`) this process
    reads its environment here, once."""
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        bind_worker_to_supervisor(supervisor_pid)
        async with contextlib.AsyncExitStack() as stack:
            redis_url = settings.redis_url
            if redis_url is None:
                # Run without `live serve` (e.g. `uvicorn --factory live.app:create_app`):
                # this process starts its own embedded server.
                redis_url = stack.enter_context(EmbeddedRedis()).url
            redis = timed_redis(redis_client(redis_url, cluster=settings.redis_cluster))
            stack.push_async_callback(redis.aclose)
            # While Redis is away, one PING every half second tells when it is back
            # (outage.REDIS logs both once).
            REDIS.attach(redis.ping)
            stack.push_async_callback(REDIS.close)
            engine = make_engine(settings.database_url)
            stack.push_async_callback(engine.dispose)
            if not schema_ready:
                await create_schema(engine)
            services = Services.build(settings, redis, engine)
            app.state.services = services
            stack.push_async_callback(services.confirms.close)
            sweeper = make_sweeper(services)
            # Group windows and members' drop-outs, in the same sweeper loop.
            sweeper.passes.append(group_sweep(services))
            sweeper.on_groups = lambda sid, gids: announce_progress(services, sid, gids)
            sweeper.start()
            stack.push_async_callback(sweeper.stop)
            reporter = LagReporter(redis, settings.drain.group, settings.drain_lag_report_ms)
            reporter.start()
            stack.push_async_callback(reporter.stop)
            with contextlib.suppress(TimeoutError):
                # A first report before the first /healthz, if it comes quickly.
                await asyncio.wait_for(reporter.ready.wait(), 2.0)
            if settings.drain_in_process:
                # Off with LIVE_DRAIN=0 or `live serve --no-drain` (drainers run as
                # `live drain`).
                drainer = DrainerTask(Drainer(redis, engine, settings.drain))
                drainer.start()
                stack.push_async_callback(drainer.stop)
            hub = build_hub(services, redis_url, settings.ws)
            stack.push_async_callback(hub.redis.aclose)
            await hub.start()
            stack.push_async_callback(hub.stop)
            log.info("worker %d ready (redis %s)", os.getpid(), redis_url)
            tune_gc()
            # The lifespan state reaches every request and the websocket protocol
            # (realtime.server.HubProtocol reads "hub" from it).
            yield {"services": services, "hub": hub}

    routes = [
        *health.routes,
        *metrics.routes,
        *openapi_routes,
        *directory.routes,
        *streams.routes,
        *viewers.routes,
        *reservations.routes,
        *sales.routes,
        *orders.routes,
        *moderation.routes,
        *groups.routes,
        *referrals.routes,
        *refunds.routes,
        *pages.routes,
    ]
    return Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
        middleware=[Middleware(HttpMetrics)],
    )
