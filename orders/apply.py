"""The SQL side of the drainer: one batch of entries into one transaction, retried
while SQL is away, split while SQL refuses it.

- SQL refuses the data itself (`refused`: a value out of a column's range, a constraint
  it violates): retrying cannot help, so the batch is applied in halves, recursively, until
  the refused entry is alone; that entry is set aside in the stream's dead letters
  (orders/deadletter.py) and everything else commits. A lone entry is set aside only
  if SQL refuses it again right after answering a ping, so an outage that looks like a
  refusal never dead-letters good events.
- Any other failure (unreachable, locked, timing out, unknown): the same batch is
  retried with back-off (orders/backoff.py), logged once per kind, and nothing new is
  read; the entries wait in Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from orders import deadletter
from orders.backoff import retrying
from orders.db import ping
from orders.events import Batch
from orders.intake import Entry
from orders.store import apply_batch
from outage import FailureLog
from telemetry.metrics import DRAIN_DEAD_LETTERED, DRAIN_FAILURES

log = logging.getLogger("orders.drain")


def _sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a database error, wherever the driver keeps it ('' if none)."""
    orig = getattr(exc, "orig", None)
    for e in (orig, getattr(orig, "__cause__", None)):
        code = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


def refused(exc: BaseException) -> bool:
    """Whether SQL rejected the data itself (retrying the same batch cannot help): a
    data exception or constraint violation (SQLSTATE classes 22 and 23), or a value
    the driver cannot even send (SQLite: an integer beyond 64 bits). Anything else
    (unreachable, locked, timed out, unknown) is retried with back-off."""
    if isinstance(exc, sa_exc.DataError | sa_exc.IntegrityError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return _sqlstate(exc)[:2] in ("22", "23")
    if isinstance(exc, sa_exc.StatementError):
        return True  # raised while binding a value, before the database saw it
    return isinstance(exc, ValueError | TypeError | OverflowError)


def transient(exc: BaseException) -> bool:
    return not refused(exc)


@dataclass
class ApplyStats:
    failures: int = 0  # SQL attempts that failed (retried, or split to isolate an event)
    dead_lettered: int = 0
    last_error: str | None = None


class Stopped(Exception):
    """The drainer was asked to stop while SQL was failing: the batch stays pending."""


def prepare(entries: Sequence[Entry]) -> Batch:
    batch = Batch()
    for key, entry_id, fields in entries:
        batch.add(key, entry_id, fields)
    return batch


class BatchApplier:
    def __init__(
        self,
        redis: Redis,
        engine: AsyncEngine,
        group: str,
        retry_max_ms: int,
        name: str,
        stats: ApplyStats | None = None,
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.group = group
        self.retry_max_s = retry_max_ms / 1000
        self.stats = stats or ApplyStats()
        self._sql = FailureLog(log, f"drainer {name}: SQL")
        self.log_context = {"consumer": name}  # the JSON log's context field

    async def apply_until_committed(
        self, entries: list[Entry], stop: asyncio.Event | None, batch: Batch | None = None
    ) -> bool:
        """Commit the entries (setting aside the ones that can never be applied);
        False when asked to stop while SQL was failing (they stay pending)."""
        if batch is None:
            batch = prepare(entries)
        if batch.bad:
            fields_of = {(k, i): f for k, i, f in entries}
            bad = [(k, i, fields_of.get((k, i), {}), why) for k, i, why in batch.bad]
            await self._set_aside(bad)
        try:
            try:
                await self._commit(batch, stop)
            except _Refused as refused:
                good = [e for e in entries if (e[0], e[1]) not in {(k, i) for k, i, _ in batch.bad}]
                await self._isolate(good, stop, refused.cause)
        except Stopped:
            return False
        return True

    async def _commit(self, batch: Batch, stop: asyncio.Event | None) -> None:
        """Commit `batch`, retrying while SQL is away. Raises _Refused when SQL rejects
        it, Stopped when asked to stop meanwhile."""

        def on_retry(exc: BaseException, wait: float) -> None:
            self.stats.failures += 1
            DRAIN_FAILURES.inc()
            self.stats.last_error = repr(exc)
            self._sql.failed(exc, f"retrying the batch (waits up to {self.retry_max_s:g} s)")

        try:
            async for attempt in retrying(stop, self.retry_max_s, transient, on_retry):
                with attempt:
                    await apply_batch(self.engine, batch)
        except Exception as exc:
            if transient(exc):
                raise Stopped from exc
            self.stats.failures += 1
            self.stats.last_error = repr(exc)
            raise _Refused(exc) from exc
        self._sql.succeeded()

    async def _isolate(
        self, entries: list[Entry], stop: asyncio.Event | None, cause: BaseException
    ) -> None:
        """SQL refused `entries` as one batch: commit them in halves, down to the entry
        it refuses alone, which is set aside."""
        if not entries:
            return
        if len(entries) == 1:
            await self._ping(stop)  # an outage is not a refusal
            try:
                await self._commit(prepare(entries), stop)
            except _Refused as refused:
                key, entry_id, fields = entries[0]
                first = (str(refused.cause).splitlines() or [""])[0]
                why = f"SQL refused it: {type(refused.cause).__name__}: {first}"
                await self._set_aside([(key, entry_id, fields, why)])
            return
        mid = len(entries) // 2
        for half in (entries[:mid], entries[mid:]):
            try:
                await self._commit(prepare(half), stop)
            except _Refused as refused:
                await self._isolate(half, stop, refused.cause)

    async def _ping(self, stop: asyncio.Event | None) -> None:
        try:
            async for attempt in retrying(stop, self.retry_max_s, transient):
                with attempt:
                    await ping(self.engine)
        except Exception as exc:
            raise Stopped from exc

    async def _set_aside(self, items: list[tuple[str, str, dict[str, Any], str]]) -> None:
        for key, entry_id, _, why in items:
            log.error("event %s %s set aside in the dead letters: %s", key, entry_id, why,
                      extra=self.log_context)
        await deadletter.set_aside(self.redis, self.group, items)
        self.stats.dead_lettered += len(items)
        DRAIN_DEAD_LETTERED.inc(len(items))


class _Refused(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(repr(cause))
        self.cause = cause
