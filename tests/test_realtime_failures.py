"""A viewer always gets an answer, even when the hub cannot reach Redis."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets
from helpers.services import service_env
from websockets.exceptions import InvalidStatus

from live.embedded_redis import EmbeddedRedis

# A service whose Redis goes away.
pytestmark = pytest.mark.slow


async def test_handshake_is_503_not_a_hang_when_redis_is_down(
    start_service, sqlite_url: str
) -> None:
    redis = EmbeddedRedis()
    try:
        svc = start_service(service_env(redis.start(), sqlite_url))
        async with httpx.AsyncClient(base_url=svc.url) as client:
            r = await client.post("/api/streams", json={"title": "t", "host_name": "Ann"})
        sid = r.json()["id"]
    finally:
        redis.stop()
    with pytest.raises(InvalidStatus) as err:
        async with asyncio.timeout(20):
            await websockets.connect(f"{svc.ws_url}/ws/streams/{sid}", open_timeout=20)
    assert err.value.response.status_code == 503
