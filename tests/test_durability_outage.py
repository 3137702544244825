"""Redis outage under a running service: a real redis-server SIGKILLed and started
again. Meanwhile HTTP answers 503 `unavailable` with Retry-After (never 500), /healthz
answers 503 naming redis, and the log says so once; when Redis is back the service
serves again by itself (no restart), says so once, and a viewer's socket goes on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import websockets
from helpers.api import host_says, new_stream, new_viewer
from helpers.services import ServiceProcess, service_env
from helpers.ws import connect, recv, recv_type
from redis_process import RedisProcess

# Fault, load and concurrency runs: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow


async def test_redis_outage_answers_503_logs_once_and_recovers_by_itself(
    tmp_path: Path,
) -> None:
    server = RedisProcess(tmp_path / "redis", appendonly=True).start()
    # Short intervals: the drainer's loop restarts and retention passes turn many times
    # during the outage, and must not log each time.
    env = service_env(
        server.url, f"sqlite+aiosqlite:///{tmp_path / 'live.db'}",
        LIVE_DRAIN_RETRY_MAX_MS="300", LIVE_RETENTION_INTERVAL_MS="200",
    )
    svc = ServiceProcess(env=env).start(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as c:
            stream = await new_stream(c)
            r = await c.post(
                f"/api/streams/{stream.id}/products", headers=stream.auth,
                json={"sku": "A", "title": "Mug", "price_cents": 900, "stock": 10},
            )
            assert r.status_code == 201, r.text
            _, token = await new_viewer(c)
            viewer = {"Authorization": f"Bearer {token}"}
            ws = await connect(svc, stream.id, token)
            assert (await recv(ws))["type"] == "hello"

            server.kill()
            # Every kind of request, several times, while the service's loops (sweeper
            # every 0.25 s, drainer, hub) keep failing in the background.
            deadline = time.monotonic() + 4.0
            seen = 0
            while time.monotonic() < deadline or seen < 5:
                for r in (
                    await c.get(f"/api/streams/{stream.id}"),
                    await c.post(
                        f"/api/streams/{stream.id}/reservations", headers=viewer,
                        json={"sku": "A", "qty": 1, "key": f"k{seen}"},
                    ),
                    await c.post(
                        f"/api/streams/{stream.id}/messages", headers=stream.auth,
                        json={"text": "anyone there?"},
                    ),
                ):
                    assert r.status_code == 503, r.text
                    assert r.json()["error"] == "unavailable", r.text
                    assert int(r.headers["Retry-After"]) > 0
                health = await c.get("/healthz")
                assert health.status_code == 503
                assert health.json()["redis"].startswith("error"), health.text
                seen += 1
                await asyncio.sleep(0.2)
            # A new socket is refused with 503 meanwhile; the open one stays open.
            try:
                await connect(svc, stream.id)
                raise AssertionError("a websocket handshake succeeded without Redis")
            except websockets.InvalidStatus as exc:
                assert exc.response.status_code == 503

            server.start()  # same port, same data (AOF, fsync always)
            deadline = time.monotonic() + 30
            while (await c.get("/healthz")).status_code != 200:
                assert time.monotonic() < deadline, "the service did not recover"
                await asyncio.sleep(0.2)
            r = await c.post(
                f"/api/streams/{stream.id}/reservations", headers=viewer,
                json={"sku": "A", "qty": 1, "key": "after"},
            )
            assert r.status_code == 201, r.text

            # The viewer that stayed connected gets what is broadcast now (or, had the
            # socket been closed with 1011, resumes on a new one).
            seq = await host_says(c, stream, "we are back")
            try:
                msg = await recv_type(ws, "host.message", wait=15)
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1011
                ws = await connect(svc, stream.id, token)
                await recv(ws)
                await ws.send('{"type":"resume","after":0}')
                msg = await recv_type(ws, "host.message", wait=15)
            assert msg["seq"] == seq and msg["data"]["text"] == "we are back"
            await ws.close()
    finally:
        svc.stop()
        server.kill()
    log = svc.log()
    assert log.count("Redis unavailable") == 1, log[-5000:]
    assert log.count("Redis back after") == 1, log[-5000:]
    assert "Traceback" not in log, log[-5000:]
