"""Entry points the `live` CLI calls: the stand-alone drainer and reconcile."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from redis.asyncio import Redis

from orders.db import create_schema, make_engine
from orders.drain import Drainer, DrainSettings
from orders.reconcile import UnknownStream, reconcile

log = logging.getLogger("orders.runner")


async def run_drainer(redis_url: str, database_url: str, settings: DrainSettings) -> int:
    """Drain until SIGTERM/SIGINT; the batch in hand is finished (or left pending)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    redis = Redis.from_url(redis_url, decode_responses=True)
    engine = make_engine(database_url)
    try:
        await create_schema(engine)
        drainer = Drainer(redis, engine, settings)
        await drainer.run(stop)
    finally:
        await redis.aclose()
        await engine.dispose()
    return 0


async def run_reconcile(redis_url: str, database_url: str, sid: str, wait_s: float) -> int:
    redis = Redis.from_url(redis_url, decode_responses=True)
    engine = make_engine(database_url)
    try:
        await create_schema(engine)
        try:
            report = await reconcile(redis, engine, sid, wait_s, DrainSettings.from_env().group)
        except UnknownStream:
            print(f"live reconcile: unknown stream {sid!r}", file=sys.stderr)
            return 2
    finally:
        await redis.aclose()
        await engine.dispose()
    print(report.render())
    return 0 if report.agree else 1
