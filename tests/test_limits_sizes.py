"""Size limits: products per stream (atomic in add_product.lua, across processes) and
banned words (count, length, and matching after Unicode normalization)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
from conftest import HostedStream, ServiceProcess, new_stream, new_viewer, service_env, service_pair
from helpers.ws import join, recv_type
from limits_helpers import tracebacks

MAX_PRODUCTS = 5


@pytest.fixture(scope="module")
def pair(
    redis_url: str, sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    env = service_env(
        redis_url,
        sqlite_url,
        LIVE_MAX_PRODUCTS=str(MAX_PRODUCTS),
        LIVE_WS_COMMENTS_PER_WINDOW="100",
    )
    with service_pair(env, tmp_path_factory.mktemp("limits-sizes")) as services:
        yield services
    for svc in services:
        assert tracebacks(svc) == []


@pytest.fixture
async def api(pair: tuple[ServiceProcess, ServiceProcess]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pair[0].url, timeout=10) as c:
        yield c


def product(sku: str) -> dict[str, object]:
    return {"sku": sku, "title": "Item", "price_cents": 100, "stock": 1}


async def test_products_per_stream_are_capped_atomically(
    pair: tuple[ServiceProcess, ServiceProcess], api: httpx.AsyncClient
) -> None:
    stream = await new_stream(api)
    clients = [httpx.AsyncClient(base_url=svc.url, timeout=10) for svc in pair]
    try:
        results = await asyncio.gather(
            *(
                clients[i % 2].post(
                    f"/api/streams/{stream.id}/products", json=product(f"p{i}"), headers=stream.auth
                )
                for i in range(20)
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    outcomes = Counter(
        r.status_code if r.status_code == 201 else r.json()["error"] for r in results
    )
    assert outcomes == {201: MAX_PRODUCTS, "too_many_products": 20 - MAX_PRODUCTS}
    refused = next(r for r in results if r.status_code == 409)
    assert str(MAX_PRODUCTS) in refused.json()["detail"]
    state = (await api.get(f"/api/streams/{stream.id}")).json()
    assert len(state["products"]) == MAX_PRODUCTS
    # A listed sku is still "exists", not "too many".
    listed = state["products"][0]["sku"]
    r = await api.post(
        f"/api/streams/{stream.id}/products", json=product(listed), headers=stream.auth
    )
    assert r.status_code == 409 and r.json()["error"] == "product_exists"


async def test_banned_words_are_bounded(api: httpx.AsyncClient) -> None:
    stream = await new_stream(api)
    url = f"/api/streams/{stream.id}/banned-words"
    ok = await api.put(url, json={"words": [f"w{i}" for i in range(500)]}, headers=stream.auth)
    assert ok.status_code == 200 and len(ok.json()["words"]) == 500
    for words in ([f"w{i}" for i in range(501)], ["x" * 51]):
        r = await api.put(url, json={"words": words}, headers=stream.auth)
        assert r.status_code == 400 and r.json()["error"] == "invalid_body", r.text
    r = await api.put(url, json={"words": ["y" * 50]}, headers=stream.auth)
    assert r.status_code == 200


async def test_banned_words_match_after_normalization(
    pair: tuple[ServiceProcess, ServiceProcess], api: httpx.AsyncClient
) -> None:
    stream: HostedStream = await new_stream(api)
    r = await api.put(
        f"/api/streams/{stream.id}/banned-words",
        # Stored normalized too: full-width, upper case, a zero-width joiner inside.
        json={"words": ["Bad", "\uff53\uff43\uff41\uff4d", "fa\u200dke"]},
        headers=stream.auth,
    )
    assert r.json()["words"] == ["bad", "fake", "scam"]
    _, token = await new_viewer(api)
    ws = await join(pair[1], stream.id, token)
    rejected = [
        "bad",
        "BAD",
        "\uff42\uff41\uff44",  # full-width
        "B\u200bAD",  # zero-width space
        "b\u00adad",  # soft hyphen (a format character)
        "so \u2060b\u2060a\u2060d\u2060 really",  # word joiners
        "\U0001d41b\U0001d41a\U0001d41d",  # mathematical bold letters
        "what a \uff33\uff23\uff21\uff2d",
        "FAKE",
    ]
    for text in rejected:
        await ws.send(orjson.dumps({"type": "comment", "text": text}).decode())
        err = await recv_type(ws, "error")
        assert err["data"]["code"] == "comment_rejected", text
    await ws.send(orjson.dumps({"type": "comment", "text": "good stuff"}).decode())
    comment = await recv_type(ws, "comment")
    assert comment["data"]["text"] == "good stuff"  # shown as written
    await ws.close()
