"""Group commit of paid orders: a confirm answers 200 only once its row is in SQL.

A confirm's decision is made in Redis (confirm.lua, atomic and idempotent); Redis may
still lose it (its last second of AOF, a failover to a replica that lacked it). So the
confirm also writes the `paid` row itself, through this batcher, before it answers:
every confirm that arrives while a transaction is in flight joins the next one, so a
flash-sale burst of thousands of confirms costs a few transactions, not thousands.

The rows are built from the same `reservation.confirmed` data and written with the same
idempotent upsert as the drainer's (orders/store.py): when the drainer applies that event
later it changes nothing, and a terminal status already in SQL is never overwritten.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from orders.events import Batch
from orders.store import apply_batch

log = logging.getLogger("orders.confirm")

# Rows per transaction at most; a bigger burst takes several back-to-back transactions.
MAX_ROWS = 1000


class CommitFailed(RuntimeError):
    """SQL refused the transaction holding this order (outage, lock, constraint)."""


class GroupCommit:
    """`await commit(raw)` returns once the paid row of confirm.lua's reservation JSON
    `raw` is committed, together with every other row submitted meanwhile."""

    def __init__(self, engine: AsyncEngine, max_rows: int = MAX_ROWS) -> None:
        self.engine = engine
        self.max_rows = max_rows
        self._waiting: list[tuple[str, str, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._failing = False  # logged once per outage, not once per transaction
        self.transactions = 0
        self.rows = 0

    async def commit(self, raw: str, event: str = "reservation.confirmed") -> None:
        """Commit the row that event `event` (`reservation.confirmed`, or
        `reservation.group_pending` for a group member) with data `raw` makes. Raises
        CommitFailed when SQL refused the transaction; cancelling the wait (a timeout)
        leaves the row to the transaction it joined."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((raw, event, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await asyncio.shield(future)

    async def _flush(self) -> None:
        while self._waiting:
            # One loop turn: confirms answered by Redis in the same moment join in.
            await asyncio.sleep(0)
            taken, self._waiting = self._waiting[: self.max_rows], self._waiting[self.max_rows :]
            batch = Batch()
            for raw, event, _ in taken:
                batch.add("confirm", "-", {"type": event, "data": raw})
            error: BaseException | None = None
            if batch.bad:
                error = CommitFailed(f"malformed confirmed reservation: {batch.bad[0][2]}")
            else:
                try:
                    await apply_batch(self.engine, batch)
                except Exception as exc:  # any SQL failure: the confirms answer 503
                    error = exc
            self._settle(taken, error)

    def _settle(self, taken: list[tuple[str, str, asyncio.Future[None]]], error: Any) -> None:
        if error is None:
            self.transactions += 1
            self.rows += len(taken)
            if self._failing:
                self._failing = False
                log.info("paid orders commit to SQL again")
        elif not self._failing:
            self._failing = True
            log.warning("paid orders cannot commit to SQL (%r); confirms answer 503", error)
        for _, _, future in taken:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                failure = CommitFailed(repr(error))
                future.set_exception(failure)
        # A waiter that gave up (timeout) never retrieves its exception: mark it seen.
        for _, _, future in taken:
            if future.done() and not future.cancelled():
                future.exception()

    async def close(self) -> None:
        """Let the transaction in flight (and what waits for the next) finish."""
        if self._flusher is not None and not self._flusher.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._flusher), 10)
            except (TimeoutError, Exception):
                log.warning("paid orders still committing at shutdown; the drainer has them")
        if self.rows:
            log.info(
                "confirms committed %d paid rows in %d transactions", self.rows, self.transactions
            )
