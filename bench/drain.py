"""Order drainer throughput and lag, against real Redis, PostgreSQL and SQLite.

    .venv/bin/python bench/drain.py [--rows 20000] [--burst 10000] [--rate 5000]

1. Drained orders/s (XREADGROUP -> parse -> upsert transaction -> XACK, end to end) at
   batch sizes 1, 100 and 1000, into PostgreSQL and SQLite; beside, in the same run, a
   bare asyncpg `executemany` and `COPY` (and stdlib sqlite3 `executemany`) of the same
   rows into a table of the same shape: the floor our pipeline is measured against.
2. Lag during a burst: a separate producer process appends `--burst` confirmed orders
   at `--rate`/s; lag of an order = its COMMIT time - its XADD time (the entry id's ms).

Uses LIVE_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0) and LIVE_BENCH_PG_URL
(default postgresql://postgres@127.0.0.1:5432/test, where a fresh database is created
and dropped). Every key and database it touches is its own (random names).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from redis import Redis as SyncRedis
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inventory import keys as inv_keys
from orders.db import create_schema, make_engine
from orders.drain import Drainer
from orders.drain_settings import DrainSettings
from orders.intake import Entry

REDIS_URL = os.environ.get("LIVE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("LIVE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
COLUMNS = (
    "id", "order_id", "stream_id", "viewer_id", "sku", "qty", "price_cents", "sale_id", "key",
    "status", "created_at", "expires_at", "paid_at", "cancelled_at", "expired_at",
)  # fmt: skip


def order(sid: str, i: int) -> dict[str, Any]:
    hex_ = f"{i:016x}"
    now = int(time.time() * 1000)
    return {
        "id": f"r_{sid[2:]}{hex_}", "stream_id": sid, "viewer_id": f"v_{i % 997}", "sku": "mug",
        "qty": 1, "price_cents": 1250, "sale_id": None, "key": f"k{i}", "created_at": now,
        "expires_at": now + 600_000, "status": "paid", "order_id": f"o_{sid[2:]}{hex_}",
        "paid_at": now,
    }  # fmt: skip


def as_record(o: dict[str, Any]) -> tuple:
    return tuple(o.get(c) for c in COLUMNS)


async def fill(redis: Redis, sid: str, n: int) -> None:
    key = inv_keys.events(sid)
    for start in range(0, n, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 1000)):
                pipe.xadd(
                    key, {"type": "reservation.confirmed", "data": orjson.dumps(order(sid, i))}
                )
            await pipe.execute()
    await redis.sadd(inv_keys.STREAMS, sid)


class TimedDrainer(Drainer):
    """The real drainer loop (`run`, with its prefetch); records per entry COMMIT time -
    XADD time (ms) and stops itself once `target` entries are in SQL."""

    lags: list[float]
    target: int
    done: asyncio.Event

    async def _ack(self, entries: list[Entry]) -> None:
        now = time.time() * 1000
        self.lags.extend(now - int(eid.split("-")[0]) for _, eid, _ in entries)
        await super()._ack(entries)
        if self.stats.entries >= self.target:
            self.done.set()


def timed(redis: Redis, engine: Any, settings: DrainSettings, target: int) -> TimedDrainer:
    drainer = TimedDrainer(redis, engine, settings)
    drainer.lags, drainer.target, drainer.done = [], target, asyncio.Event()
    return drainer


async def drain_rate(redis: Redis, db_url: str, batch: int, n: int) -> float:
    sid = f"s_{secrets.token_hex(8)}"
    await fill(redis, sid, n)
    engine = make_engine(db_url)
    await create_schema(engine)
    settings = DrainSettings(group="bench", only=frozenset({sid}), batch_size=batch, block_ms=5)
    drainer = timed(redis, engine, settings, n)
    await drainer.intake.refresh_streams()
    t0 = time.perf_counter()
    await drainer.run(drainer.done)
    elapsed = time.perf_counter() - t0
    await engine.dispose()
    await redis.delete(inv_keys.events(sid))
    await redis.srem(inv_keys.STREAMS, sid)
    return n / elapsed


async def bare_pg(dsn: str, records: list[tuple]) -> tuple[float, float]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS bare")
        await conn.execute(
            "CREATE TABLE bare (id varchar(64) PRIMARY KEY, order_id varchar(64) UNIQUE,"
            " stream_id varchar(64), viewer_id varchar(64), sku varchar(64), qty int,"
            " price_cents bigint, sale_id varchar(64), key varchar(200), status varchar(16),"
            " created_at bigint, expires_at bigint, paid_at bigint, cancelled_at bigint,"
            " expired_at bigint)"
        )
        cols = ", ".join(COLUMNS)
        marks = ", ".join(f"${i + 1}" for i in range(len(COLUMNS)))
        t0 = time.perf_counter()
        async with conn.transaction():
            await conn.executemany(f"INSERT INTO bare ({cols}) VALUES ({marks})", records)
        executemany = len(records) / (time.perf_counter() - t0)
        await conn.execute("TRUNCATE bare")
        t0 = time.perf_counter()
        await conn.copy_records_to_table("bare", records=records, columns=list(COLUMNS))
        copy = len(records) / (time.perf_counter() - t0)
        return executemany, copy
    finally:
        await conn.close()


def bare_sqlite(path: str, records: list[tuple]) -> float:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"CREATE TABLE bare ({', '.join(COLUMNS)}, PRIMARY KEY (id))")
    t0 = time.perf_counter()
    with conn:
        conn.executemany(f"INSERT INTO bare VALUES ({', '.join('?' * len(COLUMNS))})", records)
    rate = len(records) / (time.perf_counter() - t0)
    conn.close()
    return rate


def produce(redis_url: str, sid: str, n: int, rate: int) -> None:
    """Separate process: append n confirmed orders at `rate`/s in 10 ms ticks."""
    redis = SyncRedis.from_url(redis_url)
    key = inv_keys.events(sid)
    per_tick = max(1, rate // 100)
    t0 = time.perf_counter()
    sent = 0
    while sent < n:
        pipe = redis.pipeline(transaction=False)
        for i in range(sent, min(n, sent + per_tick)):
            pipe.xadd(key, {"type": "reservation.confirmed", "data": orjson.dumps(order(sid, i))})
        pipe.execute()
        sent = min(n, sent + per_tick)
        delay = t0 + sent / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


async def burst_lag(redis: Redis, db_url: str, n: int, rate: int) -> dict[str, float]:
    sid = f"s_{secrets.token_hex(8)}"
    await redis.xgroup_create(inv_keys.events(sid), "bench", id="0", mkstream=True)
    await redis.sadd(inv_keys.STREAMS, sid)
    engine = make_engine(db_url)
    await create_schema(engine)
    settings = DrainSettings(group="bench", only=frozenset({sid}), block_ms=5, batch_size=1000)
    drainer = timed(redis, engine, settings, n)
    producer = multiprocessing.get_context("spawn").Process(
        target=produce, args=(REDIS_URL, sid, n, rate)
    )
    t0 = time.perf_counter()
    producer.start()
    await drainer.run(drainer.done)
    elapsed = time.perf_counter() - t0
    producer.join(10)
    await engine.dispose()
    await redis.delete(inv_keys.events(sid))
    await redis.srem(inv_keys.STREAMS, sid)
    lags = sorted(drainer.lags)
    return {
        "p50_ms": statistics.median(lags),
        "p99_ms": lags[int(len(lags) * 0.99) - 1],
        "max_ms": lags[-1],
        "achieved_per_s": n / elapsed,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000, help="orders per run (batch 100/1000)")
    ap.add_argument("--rows-batch1", type=int, default=2_000, help="orders at batch size 1")
    ap.add_argument("--burst", type=int, default=10_000)
    ap.add_argument("--rate", type=int, default=5_000)
    args = ap.parse_args()
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    db_name = f"bench_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(PG_URL)
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    head = PG_URL.rpartition("/")[0]
    pg_dsn = f"{head}/{db_name}"
    pg_sa = pg_dsn.replace("postgresql://", "postgresql+asyncpg://")
    tmp = tempfile.mkdtemp(prefix="drainbench")
    sqlite_sa = f"sqlite+aiosqlite:///{tmp}/live.db"
    records = [as_record(order("s_" + "0" * 16, i)) for i in range(args.rows)]
    try:
        print(f"rows {args.rows} (batch 1: {args.rows_batch1}); shared 2-core machine")
        # The machine is shared and busy: each drain run is paired with a bare run of
        # the same rows just before it, and the ratio is taken within the pair.
        for name, url in (("PostgreSQL", pg_sa), ("SQLite", sqlite_sa)):
            for batch in (1, 100, 1000):
                n = args.rows_batch1 if batch == 1 else args.rows
                if name == "PostgreSQL":
                    bare, cp = await bare_pg(pg_dsn, records[:n])
                    extra = f", COPY {cp:7.0f}/s"
                else:
                    bare = bare_sqlite(f"{tmp}/bare-{batch}.db", records[:n])
                    extra = ""
                rate = await drain_rate(redis, url, batch, n)
                print(
                    f"{name:10s} batch {batch:4d}: drain {rate:7.0f} orders/s; bare "
                    f"executemany {bare:7.0f}/s{extra}; bare/drain {bare / rate:6.2f}x"
                )
        for name, url in (("PostgreSQL", pg_sa), ("SQLite", sqlite_sa)):
            r = await burst_lag(redis, url, args.burst, args.rate)
            print(
                f"burst {args.burst} at {args.rate}/s -> {name:10s}: lag p50 {r['p50_ms']:.0f} ms"
                f", p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms"
                f" (achieved {r['achieved_per_s']:.0f}/s)"
            )
    finally:
        await redis.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
