"""Fan-out from the first second: many viewers joining many streams at once on a freshly
started process all receive every broadcast (no race in subscribing to Redis)."""

from __future__ import annotations

import time

import httpx
import pytest
import websockets
from helpers.api import new_stream
from helpers.fanout import check_concurrent_joins, until_type
from helpers.services import ServiceProcess, service_env
from redis.asyncio import Redis


async def test_concurrent_first_joins_on_a_fresh_process_get_every_broadcast(
    start_service, redis_url: str, sqlite_url: str
) -> None:
    svc: ServiceProcess = start_service(service_env(redis_url, sqlite_url, LIVE_DRAIN="0"))
    await check_concurrent_joins(svc)


@pytest.mark.slow
async def test_every_round_of_joins_after_rooms_emptied(
    start_service, redis_url: str, sqlite_url: str
) -> None:
    """Rooms emptied and dropped (unsubscribed) while new joins arrive: the second round
    of joins of the same process still hears everything."""
    svc: ServiceProcess = start_service(
        service_env(redis_url, sqlite_url, LIVE_DRAIN="0", LIVE_WS_VIEWERS_INTERVAL_MS="1000")
    )
    for _ in range(2):
        await check_concurrent_joins(svc, streams=12, viewers=3)


async def test_a_lost_pubsub_connection_is_resubscribed_and_the_gap_filled(
    start_service, redis_url: str, sqlite_url: str
) -> None:
    """Redis drops the process's pub/sub connection and messages are published before
    it is back: every viewer still gets every message, in order (subscribed again, then
    the gap comes from the history)."""
    svc: ServiceProcess = start_service(service_env(redis_url, sqlite_url, LIVE_DRAIN="0"))
    assert svc.proc is not None
    redis = Redis.from_url(redis_url, decode_responses=True)
    async with httpx.AsyncClient(base_url=svc.url, timeout=15) as api:
        hosted = [await new_stream(api, f"drop {i}") for i in range(3)]
        sockets = []
        for s in hosted:
            for _ in range(2):
                ws = await websockets.connect(f"{svc.ws_url}/ws/streams/{s.id}", max_queue=None)
                await until_type(ws, "hello", time.monotonic() + 10)
                sockets.append((s.id, ws))
        try:
            links = [c for c in await redis.client_list(_type="pubsub")
                     if c["name"] == f"live-pubsub-{svc.proc.pid}"]
            assert len(links) == 1, links
            await redis.client_kill_filter(_id=links[0]["id"])
            sent: dict[str, list[int]] = {s.id: [] for s in hosted}
            for i in range(2):
                for s in hosted:
                    r = await api.post(f"/api/streams/{s.id}/messages", headers=s.auth,
                                       json={"text": f"m{i}"})
                    assert r.status_code == 202, r.text
                    sent[s.id].append(r.json()["seq"])
            for sid, ws in sockets:
                deadline = time.monotonic() + 15
                got = [(await until_type(ws, "host.message", deadline))["seq"] for _ in range(2)]
                assert got == sent[sid]
        finally:
            for _, ws in sockets:
                await ws.close()
            await redis.aclose()
