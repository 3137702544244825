"""Bounded Redis per live stream (settled reservations purged after their retention,
answered from SQL afterwards, per-user limits kept) and a /healthz whose cost does not
grow with the number of streams."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from conftest import ServiceProcess, new_stream, new_viewer, service_env
from limits_helpers import tracebacks
from redis.asyncio import Redis

from inventory import keys as inv_keys
from live.embedded_redis import EmbeddedRedis


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.slow
async def test_settled_reservations_leave_redis_and_are_answered_from_sql(
    start_service, redis: Redis, redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    group = f"lim_{secrets.token_hex(4)}"
    env = service_env(
        redis_url,
        sqlite_url,
        LIVE_SETTLED_RETENTION_S="1",
        LIVE_RESERVATION_TTL_S="1",
        LIVE_DRAIN_GROUP=group,
        LIVE_DRAIN_BLOCK_MS="50",
        LIVE_BUY_RATE_PER_S="0",
    )
    svc: ServiceProcess = start_service(env)
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as api:
        stream = await new_stream(api)
        sid = stream.id
        r = await api.post(
            f"/api/streams/{sid}/products",
            json={"sku": "P", "title": "P", "price_cents": 500, "stock": 100, "per_user_limit": 2},
            headers=stream.auth,
        )
        assert r.status_code == 201
        alice, a_token = await new_viewer(api, "Alice")
        _, b_token = await new_viewer(api, "Bob")

        async def reserve(token: str, key: str) -> httpx.Response:
            return await api.post(
                f"/api/streams/{sid}/reservations",
                json={"sku": "P", "qty": 1, "key": key},
                headers=auth(token),
            )

        paid = (await reserve(a_token, "k-paid")).json()["id"]
        assert (await api.post(f"/api/reservations/{paid}/confirm", headers=auth(a_token))).json()[
            "status"
        ] == "paid"
        cancelled = (await reserve(a_token, "k-cancel")).json()["id"]
        assert (
            await api.delete(f"/api/reservations/{cancelled}", headers=auth(a_token))
        ).status_code == 200
        expired = (await reserve(b_token, "k-expire")).json()["id"]  # left to expire
        # Churn: many settled reservations of one viewer.
        for i in range(30):
            rid = (await reserve(b_token, f"churn-{i}")).json()["id"]
            await api.delete(f"/api/reservations/{rid}", headers=auth(b_token))

        async def purged() -> bool:
            # Only the paid reservation stays (refunds need it; its unit counts).
            return (
                await redis.hkeys(inv_keys.reservations(sid)) == [paid]
                and await redis.hlen(inv_keys.idempotency(sid)) == 1
                and await redis.zcard(inv_keys.settled(sid)) == 0
            )

        await eventually(purged)
        # Alice's paid unit still counts against her limit: her count stays.
        counts = await redis.hgetall(inv_keys.counts(sid))
        assert counts == {f"{alice}\nP": "1"}
        assert await redis.hget(inv_keys.purged(sid), "rows") == str(2 + 30)

        # Status reads and repeats are answered from SQL, as Redis would have.
        r = await api.get(f"/api/reservations/{paid}", headers=auth(a_token))
        assert r.status_code == 200 and r.json()["status"] == "paid", r.text
        assert r.json()["order_id"] == "o_" + paid[2:]
        r = await api.post(f"/api/reservations/{paid}/confirm", headers=auth(a_token))
        assert r.status_code == 200 and r.json()["status"] == "paid"
        r = await api.delete(f"/api/reservations/{paid}", headers=auth(a_token))
        assert r.status_code == 409 and r.json()["error"] == "paid"
        r = await api.get(f"/api/reservations/{paid}", headers=auth(b_token))
        assert r.status_code == 403
        r = await api.delete(f"/api/reservations/{cancelled}", headers=auth(a_token))
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        r = await api.post(f"/api/reservations/{cancelled}/confirm", headers=auth(a_token))
        assert r.status_code == 409 and r.json()["error"] == "cancelled"
        r = await api.post(f"/api/reservations/{expired}/confirm", headers=auth(b_token))
        assert r.status_code == 410 and r.json()["error"] == "expired"

        # A key replayed after the retention is a new request: it makes a new reservation,
        # and the per-user limit (2) still counts the paid unit.
        again = await reserve(a_token, "k-cancel")
        assert again.status_code == 201 and again.json()["id"] != cancelled
        over = await reserve(a_token, "k-new")
        assert over.status_code == 409 and over.json()["error"] == "limit_exceeded"

    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "live.cli", "reconcile", sid, "--wait", "10"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tracebacks(svc) == []


async def test_healthz_does_not_walk_the_streams(start_service, sqlite_url: str) -> None:
    """With 20,000 registered streams, /healthz issues no per-stream command: the backlog
    comes from the report one process refreshes in the background."""
    with EmbeddedRedis() as server:
        redis = Redis.from_url(server.url, decode_responses=True)
        try:
            for start in range(0, 20_000, 5000):
                await redis.sadd(
                    inv_keys.STREAMS, *(f"s_{i:016x}" for i in range(start, start + 5000))
                )
            env = service_env(
                server.url, sqlite_url, LIVE_DRAIN_LAG_REPORT_MS="600000", LIVE_DRAIN="0"
            )
            svc = start_service(env, "--no-drain")
            async with httpx.AsyncClient(base_url=svc.url, timeout=10) as api:

                async def reported() -> bool:
                    drain = (await api.get("/healthz")).json()["drain"]
                    return bool(drain["status"] == "ok")

                await eventually(reported)  # the first walk of the 20,000
                before = await redis.info("commandstats")
                for _ in range(20):
                    body = (await api.get("/healthz")).json()
                    assert body["status"] == "ok"
                    assert body["drain"]["status"] == "ok", body
                after = await redis.info("commandstats")

            def calls(stats: dict, name: str) -> int:
                return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))

            for cmd in ("xinfo|groups", "xinfo", "xlen", "sscan", "smembers"):
                assert calls(after, cmd) == calls(before, cmd), cmd
            assert calls(after, "get") - calls(before, "get") >= 20
        finally:
            await redis.aclose()


async def test_healthz_reports_the_backlog(start_service, sqlite_url: str) -> None:
    with EmbeddedRedis() as server:
        env = service_env(server.url, sqlite_url, LIVE_DRAIN_LAG_REPORT_MS="200", LIVE_DRAIN="0")
        svc = start_service(env, "--no-drain")  # nothing drains: events wait
        async with httpx.AsyncClient(base_url=svc.url, timeout=10) as api:
            stream = await new_stream(api)
            for i in range(3):
                await api.post(
                    f"/api/streams/{stream.id}/products",
                    json={"sku": f"p{i}", "title": "x", "price_cents": 1, "stock": 1},
                    headers=stream.auth,
                )

            async def reported() -> bool:
                drain = (await api.get("/healthz")).json()["drain"]
                return drain["status"] == "ok" and drain["lag"] >= 4 and drain["streams"] == 1

            await eventually(reported, within=15)
            drain = (await api.get("/healthz")).json()["drain"]
            assert 0 <= drain["age_ms"] < 5000
