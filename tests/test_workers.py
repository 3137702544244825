"""`live serve --workers N`: any worker serves any request, because state lives in Redis."""

from __future__ import annotations

import httpx
from conftest import ServiceProcess, service_env


def test_every_worker_sees_every_stream(start_service, redis_url: str, sqlite_url: str) -> None:
    svc: ServiceProcess = start_service(service_env(redis_url, sqlite_url), "--workers", "2")
    created = []
    for i in range(10):
        # A new connection each time, so the kernel spreads them over both workers.
        r = httpx.post(svc.url + "/api/streams", json={"title": f"s{i}", "host_name": "Ann"})
        assert r.status_code == 201
        created.append(r.json())
    for stream in created:
        auth = {"Authorization": f"Bearer {stream['host_token']}"}
        r = httpx.post(
            f"{svc.url}/api/streams/{stream['id']}/products",
            headers=auth,
            json={"sku": "a", "title": "A", "price_cents": 100, "stock": 5},
        )
        assert r.status_code == 201, r.text
        for _ in range(3):
            state = httpx.get(f"{svc.url}/api/streams/{stream['id']}").json()
            assert state["title"] == stream["title"]
            assert [p["stock_left"] for p in state["products"]] == [5]
