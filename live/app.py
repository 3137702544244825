"""The Starlette application and its lifespan: what one service process owns."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from live.buying import make_sweeper
from live.config import Settings
from live.embedded_redis import EmbeddedRedis
from live.errors import EXCEPTION_HANDLERS
from live.hub_wiring import build_hub
from live.lifetime import bind_worker_to_supervisor
from live.redis_client import redis_client
from live.routes import health, moderation, orders, reservations, sales, streams, viewers
from live.services import Services
from orders.db import create_schema, make_engine
from orders.drain import Drainer, DrainerTask, DrainSettings

log = logging.getLogger("live.app")

# Set by `live serve` for its workers once it has created the schema itself, so that
# several workers do not race to create the same tables.
SCHEMA_READY_ENV = "LIVE_SCHEMA_READY"


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, object]]:
        bind_worker_to_supervisor()
        async with contextlib.AsyncExitStack() as stack:
            redis_url = settings.redis_url
            if redis_url is None:
                # Run without `live serve` (e.g. `uvicorn --factory live.app:create_app`):
                # this process starts its own embedded server.
                redis_url = stack.enter_context(EmbeddedRedis()).url
            redis = redis_client(redis_url)
            stack.push_async_callback(redis.aclose)
            engine = make_engine(settings.database_url)
            stack.push_async_callback(engine.dispose)
            if os.environ.get(SCHEMA_READY_ENV) != "1":
                await create_schema(engine)
            services = Services.build(settings, redis, engine)
            app.state.services = services
            sweeper = make_sweeper(services)
            sweeper.start()
            stack.push_async_callback(sweeper.stop)
            app.state.drain_settings = drain_settings = DrainSettings.from_env()
            if os.environ.get("LIVE_DRAIN", "1") != "0":
                # `live serve --no-drain` sets LIVE_DRAIN=0 (drainers run as `live drain`).
                drainer = DrainerTask(Drainer(redis, engine, drain_settings))
                drainer.start()
                stack.push_async_callback(drainer.stop)
            hub = build_hub(services, redis_url)
            stack.push_async_callback(hub.redis.aclose)
            await hub.start()
            stack.push_async_callback(hub.stop)
            log.info("worker %d ready (redis %s)", os.getpid(), redis_url)
            # The lifespan state reaches every request and the websocket protocol
            # (realtime.server.HubProtocol reads "hub" from it).
            yield {"services": services, "hub": hub}

    routes = [
        *health.routes,
        *streams.routes,
        *viewers.routes,
        *reservations.routes,
        *sales.routes,
        *orders.routes,
        *moderation.routes,
    ]
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
