"""A confirm answered 200 is a paid row in SQL whatever dies next: the service SIGKILLed
mid-burst, Redis killed and restarted on an older snapshot. SQL that cannot commit in time
gives 503 `try_again`, and the retry succeeds with the same order.

The services run with LIVE_DRAIN=0: no drainer copies events to SQL behind the confirm's
back, so a paid row can only come from the confirm path under test.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import ServiceProcess, free_port, service_env
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from test_inventory_ws import connect as ws_connect
from test_inventory_ws import next_of

from live.embedded_redis import answers_ping
from orders.models import PAID, OrderRow

VIEWERS = 10


def confirm_env(redis_url: str, database_url: str, **extra: str) -> dict[str, str]:
    return service_env(
        redis_url, database_url, LIVE_DRAIN="0", LIVE_BUY_RATE_PER_S="0",
        LIVE_SIGNUP_PER_MIN="0", **extra,
    )


async def reserve_many(api: httpx.AsyncClient, n: int) -> list[tuple[str, dict[str, str]]]:
    """A stream with `n` units of one product reserved by VIEWERS viewers: (rid, auth)."""
    r = await api.post("/api/streams", json={"title": "burst", "host_name": "Ann"})
    sid, host = r.json()["id"], {"Authorization": f"Bearer {r.json()['host_token']}"}
    r = await api.post(f"/api/streams/{sid}/products", headers=host, json={
        "sku": "drop", "title": "drop", "price_cents": 2500, "stock": n})
    assert r.status_code == 201, r.text
    auths = []
    for i in range(VIEWERS):
        r = await api.post("/api/viewers", json={"name": f"v{i}"})
        assert r.status_code == 201, r.text
        auths.append({"Authorization": f"Bearer {r.json()['token']}"})

    async def one(i: int) -> tuple[str, dict[str, str]]:
        auth = auths[i % VIEWERS]
        r = await api.post(f"/api/streams/{sid}/reservations", headers=auth,
                           json={"sku": "drop", "qty": 1, "key": f"k{i}"})
        assert r.status_code == 201, r.text
        return r.json()["id"], auth

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def paid_rows(engine: AsyncEngine, rids: list[str]) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(OrderRow.id, OrderRow.order_id).where(
                OrderRow.id.in_(rids), OrderRow.status == PAID)
        )
        return {rid: order_id for rid, order_id in rows}


@pytest.mark.slow
async def test_every_200_is_a_paid_row_when_the_service_is_killed_mid_burst(
    redis_url: str, database_url: str, orders_engine: AsyncEngine, tmp_path: Path
) -> None:
    n = 600
    svc = ServiceProcess(env=confirm_env(redis_url, database_url)).start(tmp_path)
    answered: dict[str, str] = {}
    try:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=svc.url, timeout=30, limits=limits) as api:
            held = await reserve_many(api, n)
            enough = asyncio.Event()

            async def confirm(rid: str, auth: dict[str, str]) -> None:
                try:
                    r = await api.post(f"/api/reservations/{rid}/confirm", headers=auth)
                except httpx.HTTPError:
                    return  # the service died under this request: no promise was made
                if r.status_code == 200:
                    answered[rid] = r.json()["order_id"]
                    if len(answered) >= 60:
                        enough.set()

            burst = [asyncio.create_task(confirm(rid, auth)) for rid, auth in held]
            await asyncio.wait_for(enough.wait(), 60)
            svc.proc.send_signal(signal.SIGKILL)
            await asyncio.gather(*burst)
    finally:
        svc.stop()
    assert 60 <= len(answered) < n, "the kill did not land mid-burst"
    assert await paid_rows(orders_engine, list(answered)) == answered


class RedisServer:
    """A real redis-server of the test's own, snapshot-only (no AOF), so that a kill -9
    and a restart roll it back to its last SAVE."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or shutil.which("valkey-server")
        assert binary, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "no", "--save", "", "--dbfilename", "dump.rdb"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not answers_ping(self.port):  # loading the snapshot, or not listening yet
            assert self.proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


async def test_every_200_is_a_paid_row_when_redis_rolls_back(
    database_url: str, orders_engine: AsyncEngine, tmp_path: Path
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    svc = ServiceProcess(env=confirm_env(server.url, database_url)).start(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as api:
            held = await reserve_many(api, 120)
            redis = Redis.from_url(server.url)
            await redis.save()  # the state Redis will come back with: all reserved, none paid
            await redis.aclose()
            results = await asyncio.gather(*(
                api.post(f"/api/reservations/{rid}/confirm", headers=auth) for rid, auth in held
            ))
            answered = {
                rid: r.json()["order_id"]
                for (rid, _), r in zip(held, results, strict=True) if r.status_code == 200
            }
            assert len(answered) == len(held), [r.text for r in results if r.status_code != 200]
            server.kill9()  # everything since the SAVE is gone
            server.start()
            assert await paid_rows(orders_engine, list(answered)) == answered
            # Redis remembers the reservations only as held; confirming again still
            # answers 200 with the same order.
            rid, auth = held[0]
            deadline = time.monotonic() + 20
            while True:
                r = await api.post(f"/api/reservations/{rid}/confirm", headers=auth)
                if r.status_code == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)  # the service reconnecting to the restarted Redis
            assert r.status_code == 200, r.text
            assert r.json()["order_id"] == answered[rid]
    finally:
        svc.stop()
        if server.proc is not None and server.proc.poll() is None:
            server.kill9()


async def test_503_try_again_while_sql_is_locked_then_the_retry_succeeds(
    redis_url: str, tmp_path: Path
) -> None:
    db = tmp_path / "locked.db"
    url = f"sqlite+aiosqlite:///{db}"
    svc = ServiceProcess(env=confirm_env(redis_url, url, LIVE_CONFIRM_TIMEOUT_MS="300")).start(
        tmp_path
    )
    try:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as api:
            (rid, auth), = await reserve_many(api, 1)
            blocker = sqlite3.connect(db, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock
            try:
                r = await api.post(f"/api/reservations/{rid}/confirm", headers=auth)
                assert r.status_code == 503, r.text
                assert r.json()["error"] == "try_again"
                assert int(r.headers["Retry-After"]) >= 1
                again = await api.post(f"/api/reservations/{rid}/confirm", headers=auth)
                assert again.status_code == 503, again.text
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            r = await api.post(f"/api/reservations/{rid}/confirm", headers=auth)
            assert r.status_code == 200, r.text
            order_id = r.json()["order_id"]
            r = await api.post(f"/api/reservations/{rid}/confirm", headers=auth)
            assert (r.status_code, r.json()["order_id"]) == (200, order_id)
        rows = sqlite3.connect(db).execute(
            "SELECT status, order_id FROM orders WHERE id = ?", (rid,)).fetchall()
        assert rows == [(PAID, order_id)]
    finally:
        svc.stop()



async def test_websocket_confirm_answers_paid_once_the_row_is_committed(
    redis_url: str, database_url: str, orders_engine: AsyncEngine, tmp_path: Path
) -> None:
    svc = ServiceProcess(env=confirm_env(redis_url, database_url)).start(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as api:
            (rid, auth), = await reserve_many(api, 1)
            sid = (await api.get(f"/api/reservations/{rid}", headers=auth)).json()["stream_id"]
            other = (await reserve_many(api, 1))[0][0]  # a reservation of another stream
        ws = await ws_connect(svc, sid, auth["Authorization"][7:])
        try:
            await ws.send(orjson.dumps({"type": "confirm", "reservation_id": rid}).decode())
            first = await next_of(ws, "reservation", "error")
            assert first["type"] == "reservation", first
            assert first["data"]["status"] == "paid" and first["data"]["id"] == rid
            order_id = first["data"]["order_id"]
            assert await paid_rows(orders_engine, [rid]) == {rid: order_id}
            await ws.send(orjson.dumps({"type": "confirm", "reservation_id": rid}).decode())
            again = await next_of(ws, "reservation", "error")
            assert again["data"]["order_id"] == order_id
            await ws.send(orjson.dumps({"type": "confirm", "reservation_id": other}).decode())
            refused = await next_of(ws, "reservation", "error")
            assert refused["type"] == "error" and refused["data"]["code"] == "not_found"
            await ws.send(orjson.dumps({"type": "confirm"}).decode())
            bad = await next_of(ws, "reservation", "error")
            assert bad["data"]["code"] == "invalid_message"
        finally:
            await ws.close()
    finally:
        svc.stop()
