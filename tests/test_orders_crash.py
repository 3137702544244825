"""Crash tests with real processes: `live drain` and `live serve` SIGKILLed mid-burst.

The claim under test is the protocol's "no lost order" (docs/protocol.md): every
confirmed reservation becomes exactly one row in SQL, whatever process dies when.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from helpers.orders import (
    add_stream,
    emit_status,
    new_rid,
    new_sid,
    sql_orders,
    waiting,
)
from helpers.services import service_env
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from orders.models import OrderRow

# Processes SIGKILLed mid-burst, several seconds each, with bursts that keep the CPUs busy.
pytestmark = [pytest.mark.slow, pytest.mark.heavy]

STATUS = OrderRow.__table__.c.keys().index("status")
ORDER_ID = OrderRow.__table__.c.keys().index("order_id")


class DrainProcess:
    """`live drain` as a subprocess of its own, killable at any moment."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_dir / f"drain-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "live.cli", "drain"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.log_dir,
        )
        log.close()

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, self.logs()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob("drain-*.log"))
        )


def drain_env(redis_url: str, database_url: str, group: str, **extra: str) -> dict[str, str]:
    return service_env(
        redis_url,
        database_url,
        LIVE_DRAIN_GROUP=group,
        LIVE_DRAIN_BATCH=extra.pop("LIVE_DRAIN_BATCH", "50"),
        LIVE_DRAIN_CLAIM_IDLE_MS="400",
        LIVE_DRAIN_BLOCK_MS="50",
        LIVE_DRAIN_REFRESH_MS="100",
        LIVE_LOG_LEVEL="warning",
        **extra,
    )


async def wait_drained(redis: Redis, group: str, sids: list[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while await waiting(redis, group, sids):
        assert time.monotonic() < deadline, "events were not drained in time"
        await asyncio.sleep(0.05)


async def test_sigkilled_drainer_loses_and_duplicates_nothing(
    redis: Redis, redis_url: str, database_url: str, orders_engine: AsyncEngine, tmp_path: Path
) -> None:
    sid = new_sid()
    await add_stream(redis, sid)
    group = f"orders_t{secrets.token_hex(4)}"
    drainer = DrainProcess(drain_env(redis_url, database_url, group, LIVE_DRAIN_ONLY=sid), tmp_path)
    expected: dict[str, str] = {}
    finals = ("paid", "paid", "cancelled", "expired", "reserved")
    killed = asyncio.Event()
    mid_batch_kills = 0

    async def burst() -> None:
        i = 0
        # Keeps producing until every kill is done (bounded), so each kill lands mid-flow.
        while not killed.is_set() and i < 20_000:
            rid = new_rid(sid)
            await emit_status(redis, sid, rid, "reserved")
            final = finals[i % len(finals)]
            if final != "reserved":
                await emit_status(redis, sid, rid, final)
            expected[rid] = final
            i += 1
            if i % 20 == 0:
                await asyncio.sleep(0.002)

    async def entries_read() -> int:
        for g in await redis.xinfo_groups(inv_keys.events(sid)):
            if g["name"] == group:
                return int(g.get("entries-read") or 0)
        return 0

    async def killer(rounds: int) -> None:
        nonlocal mid_batch_kills
        try:
            for _ in range(rounds):
                # Wait until this drainer life is really working, then kill at random.
                seen = await entries_read()
                deadline = time.monotonic() + 20
                while await entries_read() <= seen + 100:
                    assert time.monotonic() < deadline, drainer.logs()
                    await asyncio.sleep(0.02)
                await asyncio.sleep(random.uniform(0, 0.15))
                pending = (await redis.xpending(inv_keys.events(sid), group))["pending"]
                drainer.kill()  # mid-batch, mid-commit or mid-XACK: wherever it is
                mid_batch_kills += pending > 0
                drainer.start()
        finally:
            killed.set()

    drainer.start()
    try:
        await asyncio.gather(burst(), burst(), killer(4))
        await wait_drained(redis, group, [sid])
        # SIGTERM: a clean stop after the batch in hand.
        assert await asyncio.to_thread(drainer.stop) == 0, drainer.logs()
    finally:
        drainer.stop()
    print(f"{len(expected)} reservations, {mid_batch_kills}/4 kills with a batch in flight")
    assert drainer.starts == 5
    got = await sql_orders(orders_engine, sid)
    assert {rid: row[STATUS] for rid, row in got.items()} == expected
    for rid, row in got.items():
        assert row[ORDER_ID] == ("o_" + rid[2:] if expected[rid] == "paid" else None)


async def _buy(client: httpx.AsyncClient, sid: str, token: str, i: int) -> tuple[str | None, bool]:
    """Reserve and confirm; returns (reservation id or None, confirmed with 200)."""
    auth = {"Authorization": f"Bearer {token}"}
    try:
        r = await client.post(
            f"/api/streams/{sid}/reservations",
            json={"sku": "mug", "qty": 1, "key": f"k{i}"},
            headers=auth,
        )
        if r.status_code not in (200, 201):
            return None, False
        rid = r.json()["id"]
        c = await client.post(f"/api/reservations/{rid}/confirm", headers=auth)
        return rid, c.status_code == 200 and c.json()["status"] == "paid"
    except httpx.TransportError:
        return None, False


async def test_kill_service_and_drainer_during_confirm_burst(
    redis: Redis,
    redis_url: str,
    database_url: str,
    orders_engine: AsyncEngine,
    start_service,
    tmp_path: Path,
) -> None:
    group = f"orders_t{secrets.token_hex(4)}"
    env = service_env(redis_url, database_url, LIVE_DRAIN_GROUP=group, LIVE_LOG_LEVEL="warning")
    svc_a = start_service(env, "--no-drain")
    svc_b = start_service(env, "--no-drain")
    async with httpx.AsyncClient(base_url=svc_a.url, timeout=10) as a:
        r = await a.post("/api/streams", json={"title": "crash", "host_name": "Ann"})
        sid, host = r.json()["id"], r.json()["host_token"]
        r = await a.post(
            f"/api/streams/{sid}/products",
            json={"sku": "mug", "title": "Mug", "price_cents": 1250, "stock": 5000},
            headers={"Authorization": f"Bearer {host}"},
        )
        assert r.status_code == 201, r.text
        tokens = []
        for n in range(60):
            v = await a.post("/api/viewers", json={"name": f"v{n}"})
            tokens.append(v.json()["token"])

    # Only this stream: a fresh group on a shared Redis would otherwise start by draining
    # every stream that other tests and sessions left there.
    drainer = DrainProcess(drain_env(redis_url, database_url, group, LIVE_DRAIN_ONLY=sid), tmp_path)
    drainer.start()
    results: list[tuple[str | None, bool]] = []

    async def viewer(base: str, token: str, first: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            for i in range(first, first + 8):
                results.append(await _buy(c, sid, token, i))

    async def killer() -> None:
        await asyncio.sleep(random.uniform(0.3, 1.0))
        svc_b.stop(signal.SIGKILL, timeout_s=5)
        drainer.kill()
        await asyncio.sleep(random.uniform(0.1, 0.4))
        drainer.start()

    try:
        await asyncio.gather(
            *(
                viewer(svc_a.url if n % 2 else svc_b.url, tok, n * 100)
                for n, tok in enumerate(tokens)
            ),
            killer(),
        )
        await wait_drained(redis, group, [sid])
    finally:
        drainer.stop()

    told_paid = {rid for rid, ok in results if ok}
    assert len(told_paid) > 100, "the burst did not get going"
    raw = await redis.hgetall(inv_keys.reservations(sid))
    redis_status = {rid: orjson.loads(v)["status"] for rid, v in raw.items()}
    sql = await sql_orders(orders_engine, sid)
    sql_status = {rid: row[STATUS] for rid, row in sql.items()}
    # Every reservation Redis knows is exactly one SQL row with the same status ...
    assert sql_status == redis_status
    # ... and every viewer who was told "paid" has a paid order with its order id.
    for rid in told_paid:
        assert sql_status[rid] == "paid"
        assert sql[rid][ORDER_ID] == "o_" + rid[2:]


async def test_three_drain_processes_one_killed_for_good(
    redis: Redis, redis_url: str, database_url: str, orders_engine: AsyncEngine, tmp_path: Path
) -> None:
    """Several `live drain` processes share the work; the entries a SIGKILLed one held
    are claimed by the survivors (XAUTOCLAIM), nothing twice."""
    sids = [new_sid() for _ in range(2)]
    for sid in sids:
        await add_stream(redis, sid)
    group = f"orders_t{secrets.token_hex(4)}"
    env = drain_env(redis_url, database_url, group, LIVE_DRAIN_ONLY=",".join(sids))
    drainers = []
    for n in range(3):
        (tmp_path / f"d{n}").mkdir()
        drainers.append(DrainProcess(env, tmp_path / f"d{n}"))
        drainers[-1].start()
    expected: dict[str, dict[str, str]] = {sid: {} for sid in sids}

    async def burst(sid: str, n: int) -> None:
        for i in range(n):
            rid = new_rid(sid)
            final = ("paid", "cancelled", "reserved")[i % 3]
            await emit_status(redis, sid, rid, "reserved")
            if final != "reserved":
                await emit_status(redis, sid, rid, final)
            expected[sid][rid] = final
            if i % 20 == 0:
                await asyncio.sleep(0.002)

    async def kill_one() -> None:
        await asyncio.sleep(random.uniform(0.8, 1.5))
        drainers[0].kill()

    try:
        await asyncio.gather(*(burst(sid, 2500) for sid in sids), kill_one())
        await wait_drained(redis, group, sids)
        consumers = await redis.xinfo_consumers(inv_keys.events(sids[0]), group)
        assert len(consumers) >= 2, "the work was not shared"
    finally:
        for d in drainers:
            d.stop()
    for sid in sids:
        got = await sql_orders(orders_engine, sid)
        assert {rid: row[STATUS] for rid, row in got.items()} == expected[sid]
