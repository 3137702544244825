"""The order drainer: inventory events from Redis Streams into SQL, exactly once.

Reads every stream listed in `live:streams` through the consumer group `orders`
(XREADGROUP), applies a batch in one SQL transaction of idempotent upserts, and
acknowledges (XACK) only after COMMIT. A drainer that dies leaves its entries pending;
any live drainer claims them (XAUTOCLAIM) once they have been idle for
`claim_idle_ms`, and re-applying them is a no-op. So: at-least-once delivery from Redis
(orders/intake.py) + idempotent effects in SQL (orders/apply.py) = every event takes
effect exactly once. This module is the loop between them: prefetch, commit, then
acknowledge, restarted after any error; the task wrapper is orders/runner.py's.

Backpressure: while SQL fails, the drainer keeps retrying the batch in hand (with
backoff) and reads nothing new, so events wait in Redis, where `lag()` reports them.

Retention (orders/retention.py): after acknowledging, the drainer trims what every group
has acknowledged and is older than the events window, and every interval it deletes the
Redis state of ended, fully drained streams past their retention.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from orders.apply import ApplyStats, BatchApplier, prepare
from orders.backoff import retrying
from orders.drain_settings import DrainSettings, consumer_name
from orders.events import Batch
from orders.intake import Entry, Intake, IntakeStats
from orders.retention import Retention
from outage import REDIS, FailureLog, redis_down
from telemetry.metrics import DRAIN_BATCHES, DRAIN_FAILURES, ORDERS_DRAINED

log = logging.getLogger("orders.drain")


@dataclass
class DrainStats(ApplyStats, IntakeStats):
    batches: int = 0
    entries: int = 0
    restarts: int = 0  # of the drainer loop after an unexpected error
    started_at: float = field(default_factory=time.time)


class Drainer:
    def __init__(
        self,
        redis: Redis,
        engine: AsyncEngine,
        settings: DrainSettings | None = None,
        consumer: str | None = None,
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.settings = settings or DrainSettings()
        self.consumer = consumer or consumer_name()
        self.group = self.settings.group
        self.stats = DrainStats()
        self.retention = Retention(
            redis,
            events_retention_ms=self.settings.events_retention_s * 1000,
            stream_retention_ms=self.settings.stream_retention_s * 1000,
            interval_ms=self.settings.retention_interval_ms,
            only=self.settings.only,
        )
        # The Redis half: read, claim, acknowledge (orders/intake.py).
        self.intake = Intake(
            redis, self.settings, self.consumer, self.stats, on_refresh=self.retention.forget
        )
        self._next_retire = 0.0
        self.applier = BatchApplier(
            redis, engine, self.group, self.settings.retry_max_ms, self.consumer, self.stats
        )
        self._loop_failures = FailureLog(log, f"drainer {self.consumer}")
        self.log_context = {"consumer": self.consumer}  # the JSON log's context field

    # --- the loop ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until `stop` is set. Any error restarts the loop after a back-off
        (up to `retry_max_ms`), logged once per kind with its traceback (Redis being
        away once per outage): the drainer never stops silently. Nothing is lost on
        a restart: unacknowledged entries stay pending and are claimed again."""
        log.info("drainer %s started", self.consumer, extra=self.log_context)

        def on_retry(exc: BaseException, wait: float) -> None:
            self.stats.restarts += 1
            DRAIN_FAILURES.inc()
            self.stats.last_error = repr(exc)
            if redis_down(exc):
                REDIS.failed(f"drainer {self.consumer}", exc)
            else:
                self._loop_failures.failed(exc, f"restarting the drainer loop in {wait:.2f} s")

        try:
            async for attempt in retrying(
                stop, self.settings.retry_max_ms / 1000, lambda _: True, on_retry, 0.2
            ):
                with attempt:
                    await self._run_loop(stop)
        except Exception as exc:
            # Only when stopping while the loop was failing.
            log.info("drainer %s stopping after %r", self.consumer, exc)
        finally:
            log.info("drainer %s stopped after %d entries in %d transactions", self.consumer,
                     self.stats.entries, self.stats.batches, extra=self.log_context)

    async def _run_loop(self, stop: asyncio.Event) -> None:
        """The next batch is fetched from Redis while the current one commits (only the
        SQL transaction is on the critical path); it is still acknowledged only after
        its own COMMIT."""
        self.intake.restart()
        prefetch: asyncio.Task[tuple[list[Entry], Batch]] | None = None
        acking: asyncio.Task[None] | None = None
        try:
            while True:
                if prefetch is not None:
                    (entries, batch), prefetch = await prefetch, None
                elif stop.is_set():
                    break
                else:
                    entries, batch = await self._take_prepared()
                if not entries:
                    continue
                if not stop.is_set():
                    prefetch = asyncio.create_task(self._take_prepared())
                # On stop the prefetched batch is applied too rather than left for
                # XAUTOCLAIM; a failing database leaves both pending instead.
                committed = await self._apply_until_committed(entries, stop, batch)
                if acking is not None:
                    # At most one XACK in flight; a lost one only means a replay.
                    acking, previous = None, acking
                    await previous
                if committed:
                    acking = asyncio.create_task(self._ack(entries))
                elif prefetch is not None:
                    (entries, _), prefetch = await prefetch, None
                    log.info("drainer %s: %d entries left pending", self.consumer, len(entries))
            if acking is not None:
                acking, last = None, acking
                try:
                    await last
                except RedisError as exc:
                    log.warning(
                        "drainer %s: last XACK failed (%r); replayed later", self.consumer, exc
                    )
        finally:
            for task in (prefetch, acking):
                if task is not None:
                    task.cancel()  # those entries stay pending: claimed again later
                    await asyncio.gather(task, return_exceptions=True)

    async def take(self) -> list[Entry]:
        """The next batch (orders/intake.py), after the retirement pass when it is due."""
        now = time.monotonic()
        if now >= self._next_retire:
            self._next_retire = now + self.settings.retention_interval_ms / 1000
            if await self._retire_due():
                self.intake.refresh_soon()  # stop reading the retired streams at once
        entries = await self.intake.take()
        # A turn went through: a run of loop failures (each logged once) is over. (The
        # end of a Redis outage is told by outage.REDIS's probe.)
        self._loop_failures.succeeded()
        return entries

    async def step(self, stop: asyncio.Event | None = None) -> int:
        """Take one batch, apply it, acknowledge it (no prefetch). Returns its size."""
        entries = await self.take()
        if entries:
            if not await self._apply_until_committed(entries, stop):
                return 0
            await self._ack(entries)
        return len(entries)

    # --- after a commit ---------------------------------------------------------

    async def _ack(self, entries: list[Entry]) -> None:
        acked = await self.intake.ack(entries)
        try:
            # After the acks, off the critical path, at most every interval per stream.
            await self.retention.trim(acked)
        except Exception as exc:
            if redis_down(exc):
                raise  # the loop's restart reports it, once per outage
            # Trimming only frees memory: a failed pass is retried after the next acks.
            log.warning("drainer %s: trimming events failed: %r", self.consumer, exc)

    async def _retire_due(self) -> list[str]:
        try:
            return await self.retention.retire_due()
        except Exception as exc:
            if redis_down(exc):
                raise  # the loop's restart reports it, once per outage
            # Retirement only frees memory; it must never stop the drain.
            log.warning("drainer %s: retiring ended streams failed: %r", self.consumer, exc)
            return []

    # --- SQL side (orders/apply.py) ------------------------------------------------

    async def _take_prepared(self) -> tuple[list[Entry], Batch]:
        entries = await self.take()
        return entries, prepare(entries)

    async def _apply_until_committed(
        self, entries: list[Entry], stop: asyncio.Event | None, batch: Batch | None = None
    ) -> bool:
        committed = await self.applier.apply_until_committed(entries, stop, batch)
        if committed:
            self.stats.batches += 1
            self.stats.entries += len(entries)
            DRAIN_BATCHES.inc()
            ORDERS_DRAINED.inc(len(entries))
        return committed

