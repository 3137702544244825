"""What the pages need from the service, without a browser: the pages and their static
files (headers, languages), the public directory `GET /api/streams`, and reservations
made over HTTP reaching the buyer's sockets on another process."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from pages_helpers import ServiceProcess, service_env
from websockets.asyncio.client import connect as ws_connect


async def post(c: httpx.AsyncClient, path: str, token: str | None = None, **body: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = await c.post(path, json=body, headers=headers)
    assert r.status_code < 300, r.text
    return r.json()


async def test_pages_are_served_with_strict_headers(client: httpx.AsyncClient) -> None:
    for path in ("/", "/host/s_0123456789abcdef", "/s/s_0123456789abcdef"):
        r = await client.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cache-control"] == "no-cache"
        again = await client.get(path, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
        # Nothing is loaded from outside the service.
        assert not re.search(r'(src|href)="(https?:)?//', r.text)
    # Static files live under a content version and are cached for good.
    page = (await client.get("/s/s_0123456789abcdef")).text
    scripts = re.findall(r'src="(/static/[0-9a-f]+/js/watch\.js)"', page)
    assert len(scripts) == 1
    r = await client.get(scripts[0])
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert "immutable" in r.headers["cache-control"]
    # Every module the page imports is there too.
    for name in re.findall(r'from "\./([a-z]+\.js)"', r.text):
        dep = await client.get(scripts[0].replace("watch.js", name))
        assert dep.status_code == 200, name
    assert (await client.get("/static/abc/js/nope.js")).status_code == 404
    assert (await client.get("/static/abc/%2E%2E/routes.py")).status_code == 404
    assert (await client.get("/s/bad id!")).status_code == 404


async def test_language_from_query_then_accept_language(client: httpx.AsyncClient) -> None:
    zh = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
    assert '<html lang="zh">' in (await client.get("/", headers=zh)).text
    assert '<html lang="en">' in (await client.get("/?lang=en", headers=zh)).text
    assert '<html lang="zh">' in (await client.get("/?lang=zh")).text
    en_first = {"Accept-Language": "en-US,en;q=0.9,zh;q=0.5"}
    assert '<html lang="en">' in (await client.get("/", headers=en_first)).text
    r = await client.get("/s/s_1?lang=zh")
    assert "立即购买" in r.text and r.headers["content-language"] == "zh"
    # The string table is embedded as JSON data the page reads (not as a script).
    table = re.search(r'<script type="application/json" id="strings">(.*?)</script>', r.text, re.S)
    assert table is not None and json.loads(table.group(1))["buy"] == "立即购买"


async def test_directory_lists_live_streams_first_newest_first(
    client: httpx.AsyncClient,
) -> None:
    made = []
    for i in range(4):
        made.append(await post(client, "/api/streams", title=f"dir {i}", host_name="Ann"))
        await asyncio.sleep(0.005)  # distinct creation times (ties are ordered by id)
    ended = made[1]
    await post(client, f"/api/streams/{ended['id']}/end", ended["host_token"])
    ours = {s["id"] for s in made}

    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):  # the shared service lists other tests' streams too
        q = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        r = await client.get("/api/streams", params=q)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["streams"]) <= 2
        seen += page["streams"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [s["id"] for s in seen]
    assert len(ids) == len(set(ids))  # no stream twice across pages
    statuses = [s["status"] for s in seen]
    assert statuses == sorted(statuses, key=lambda st: st != "live")  # live ones first
    live = [s for s in seen if s["status"] == "live"]
    assert [s["created_at"] for s in live] == sorted((s["created_at"] for s in live), reverse=True)
    mine = [s["id"] for s in seen if s["id"] in ours]
    assert mine == [made[3]["id"], made[2]["id"], made[0]["id"], ended["id"]]
    entry = next(s for s in seen if s["id"] == made[0]["id"])
    # Public fields only: never a token.
    assert set(entry) == {"id", "title", "host_name", "status", "created_at", "ended_at",
                          "viewers", "watch_url"}
    assert entry["watch_url"] == f"/s/{made[0]['id']}"


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=201", "limit=abc", "limit=-1", "limit=%EF%BC%91", "limit=", "cursor=",
     "cursor=nope", "cursor=bC4xLnNfeA"],
)
async def test_directory_query_is_validated(client: httpx.AsyncClient, query: str) -> None:
    r = await client.get(f"/api/streams?{query}")
    assert r.status_code == 400, query
    assert r.json()["error"] == "invalid_query"
    assert r.json()["detail"].split(":")[0] in {"limit", "cursor"}


@pytest.mark.slow
async def test_http_reservation_reaches_the_buyers_sockets_on_another_process(
    start_service: Any, redis_url: str, sqlite_url: str
) -> None:
    env = service_env(redis_url, sqlite_url)
    a: ServiceProcess = start_service(dict(env))
    b: ServiceProcess = start_service(dict(env))
    async with httpx.AsyncClient(base_url=b.url, timeout=10) as c:
        s = await post(c, "/api/streams", title="Two processes", host_name="Ann")
        await post(c, f"/api/streams/{s['id']}/products", s["host_token"],
                   sku="mug", title="Mug", price_cents=1200, stock=5)
        buyer = await post(c, "/api/viewers", name="Bo")
        other = await post(c, "/api/viewers", name="Cy")
        base = f"{a.ws_url}/ws/streams/{s['id']}?token="
        async with ws_connect(base + buyer["token"]) as mine, \
                ws_connect(base + other["token"]) as theirs:
            for ws in (mine, theirs):
                assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"

            async def next_reservation(ws: Any) -> dict[str, Any]:
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if msg["type"] == "reservation":
                        assert msg["seq"] is None  # per-viewer, outside the broadcast order
                        return msg["data"]

            # Made, paid and (another one) cancelled over HTTP on process b.
            r = await post(c, f"/api/streams/{s['id']}/reservations", buyer["token"],
                           sku="mug", qty=1, key="k1")
            got = await next_reservation(mine)
            assert got["id"] == r["id"] and got["status"] == "reserved"
            await post(c, f"/api/reservations/{r['id']}/confirm", buyer["token"])
            got = await next_reservation(mine)
            assert got["id"] == r["id"] and got["status"] == "paid" and got["order_id"]
            r2 = await post(c, f"/api/streams/{s['id']}/reservations", buyer["token"],
                            sku="mug", qty=1, key="k2")
            assert (await next_reservation(mine))["id"] == r2["id"]
            gone = await c.delete(f"/api/reservations/{r2['id']}",
                                  headers={"Authorization": f"Bearer {buyer['token']}"})
            assert gone.status_code == 200
            got = await next_reservation(mine)
            assert got["id"] == r2["id"] and got["status"] == "cancelled"
            # The other viewer heard none of it: its next reservation message is its own.
            r3 = await post(c, f"/api/streams/{s['id']}/reservations", other["token"],
                            sku="mug", qty=1, key="k3")
            assert (await next_reservation(theirs))["id"] == r3["id"]


async def test_directory_indexes_streams_made_before_it_existed(
    start_service: Any, redis_url: str, sqlite_url: str
) -> None:
    """State kept from an older version has streams the directory never saw: the first
    listing on a process walks the registry once and indexes them."""
    from redis.asyncio import Redis

    svc: ServiceProcess = start_service(service_env(redis_url, sqlite_url))
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        async with httpx.AsyncClient(base_url=svc.url, timeout=10) as c:
            old = await post(c, "/api/streams", title="from before", host_name="Ann")
            # As if it had been made by a version without the directory.
            await redis.zrem("live:dir:live", old["id"])
            await redis.delete("live:dir:backfilled")
            # A fresh process (this one may have seen the marker already).
            fresh: ServiceProcess = start_service(service_env(redis_url, sqlite_url))
            async with httpx.AsyncClient(base_url=fresh.url, timeout=10) as c2:
                r = await c2.get("/api/streams", params={"limit": "200"})
                assert r.status_code == 200
                listed = {s["id"] for s in r.json()["streams"]}
            assert old["id"] in listed
            assert await redis.exists("live:dir:backfilled")
    finally:
        await redis.aclose()
