"""Running the order drainer: as a service process's background task (`DrainerTask`), or
stand-alone and reconcile, the entry points the `live` CLI calls."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from orders import deadletter
from orders.db import create_schema, make_engine
from orders.drain import Drainer
from orders.drain_settings import GROUP, DrainSettings
from orders.reconcile import UnknownStream, reconcile
from orders.recovery import rebuild_stream, replay_dead_letters
from outage import REDIS
from rediskit.client import redis_client

log = logging.getLogger("orders.runner")


class DrainerTask:
    """A drainer running as a background task of a service process."""

    def __init__(self, drainer: Drainer, stop_timeout_s: float = 10.0) -> None:
        self.drainer = drainer
        self.stop_timeout_s = stop_timeout_s
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.drainer.run(self._stop), name="order-drainer")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is None:
            return
        try:
            # Lets the batch in hand commit and be acknowledged; past the timeout it is
            # cancelled and its entries stay pending for XAUTOCLAIM.
            await asyncio.wait_for(self._task, self.stop_timeout_s)
        except TimeoutError:
            log.warning("drainer %s did not stop in time; cancelled", self.drainer.consumer)
        except Exception:
            log.exception("drainer %s failed", self.drainer.consumer)


async def run_drainer(
    redis_url: str, database_url: str, settings: DrainSettings, cluster: bool = False
) -> int:
    """Drain until SIGTERM/SIGINT; the batch in hand is finished (or left pending)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    redis = redis_client(redis_url, cluster=cluster)
    engine = make_engine(database_url)
    REDIS.attach(redis.ping)  # says once when an outage is over
    try:
        await create_schema(engine)
        drainer = Drainer(redis, engine, settings)
        await drainer.run(stop)
    finally:
        await REDIS.close()
        await redis.aclose()
        await engine.dispose()
    return 0


async def run_reconcile(
    redis_url: str,
    database_url: str,
    sid: str,
    wait_s: float,
    repair: bool = False,
    drop_dead_letters: bool = False,
    cluster: bool = False,
    group: str = GROUP,
) -> int:
    """Exit 0: Redis and SQL agree (after the repair, with one) and no dead letters;
    1: they still differ, or dead letters remain; 2: bad input (unknown stream);
    3: could not check (Redis or SQL unreachable)."""
    redis = redis_client(redis_url, cluster=cluster)
    engine = make_engine(database_url)
    try:
        try:
            await create_schema(engine)
            report = await reconcile(redis, engine, sid, wait_s, group)
            if (repair or drop_dead_letters) and report.retired_ended_at is None:
                print(report.render())
                changes: list[str] = []
                if repair:
                    rebuilt = await rebuild_stream(redis, engine, sid, force=True)
                    changes += rebuilt.lines()
                    changes += await replay_dead_letters(redis, engine, sid, group)
                if drop_dead_letters:
                    dead = await deadletter.listed(redis, sid, group=group)
                    n = await deadletter.remove(redis, sid, [d["id"] for d in dead])
                    changes.append(f"dropped {n} dead letter(s)")
                print("REPAIRED:" if changes else "REPAIR: nothing to change")
                print("\n".join(f"  {line}" for line in changes))
                report = await reconcile(redis, engine, sid, wait_s, group)
                print("after the repair:")
        except UnknownStream:
            print(f"live reconcile: unknown stream {sid!r}", file=sys.stderr)
            return 2
        except (RedisError, SQLAlchemyError, OSError) as exc:
            first = (str(exc).splitlines() or [""])[0]
            print(f"live reconcile: could not check: {type(exc).__name__}: {first}",
                  file=sys.stderr)
            return 3
    finally:
        await redis.aclose()
        await engine.dispose()
    print(report.render())
    return 0 if report.agree else 1
