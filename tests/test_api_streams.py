"""The streams, products, pin, messages, end and viewers endpoints, errors included."""

from __future__ import annotations

import time

import httpx
import pytest
from helpers.api import HostedStream, new_stream, new_viewer
from helpers.services import TEST_SECRET

from live.tokens import TokenSigner


async def test_create_stream_returns_id_and_host_token(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/streams", json={"title": "Sneaker drop", "host_name": "Ann"})
    assert r.status_code == 201
    body = r.json()
    assert body["id"] and body["host_token"]
    assert body["title"] == "Sneaker drop" and body["status"] == "live"

    state = (await client.get(f"/api/streams/{body['id']}")).json()
    assert state["title"] == "Sneaker drop"
    assert state["host_name"] == "Ann"
    assert state["products"] == [] and state["pinned_sku"] is None
    assert state["seq"] == 0 and state["viewers"] == 0 and state["sales"] == []


async def test_host_adds_products_and_state_shows_stock(
    client: httpx.AsyncClient, stream: HostedStream
) -> None:
    r = await client.post(
        f"/api/streams/{stream.id}/products",
        headers=stream.auth,
        json={"sku": "mug-1", "title": "Mug", "price_cents": 1299, "stock": 40,
              "per_user_limit": 2},
    )
    assert r.status_code == 201, r.text
    assert r.json()["stock_left"] == 40 and r.json()["per_user_limit"] == 2

    again = await client.post(
        f"/api/streams/{stream.id}/products",
        headers=stream.auth,
        json={"sku": "mug-1", "title": "Mug", "price_cents": 1, "stock": 1},
    )
    assert again.status_code == 409 and again.json()["error"] == "product_exists"

    products = (await client.get(f"/api/streams/{stream.id}")).json()["products"]
    assert [(p["sku"], p["stock_left"], p["price_cents"]) for p in products] == [
        ("mug-1", 40, 1299)
    ]


async def test_pin_and_message_broadcast_with_increasing_seq(
    client: httpx.AsyncClient, stream: HostedStream
) -> None:
    await client.post(
        f"/api/streams/{stream.id}/products",
        headers=stream.auth,
        json={"sku": "cap", "title": "Cap", "price_cents": 900, "stock": 3},
    )
    pin = await client.post(f"/api/streams/{stream.id}/pin", headers=stream.auth,
                            json={"sku": "cap"})
    assert pin.status_code == 200 and pin.json()["pinned_sku"] == "cap"
    msg = await client.post(f"/api/streams/{stream.id}/messages", headers=stream.auth,
                            json={"text": "Two left!"})
    assert msg.status_code == 202
    assert msg.json()["seq"] == pin.json()["seq"] + 1
    state = (await client.get(f"/api/streams/{stream.id}")).json()
    assert state["pinned_sku"] == "cap" and state["seq"] == msg.json()["seq"]

    unknown = await client.post(f"/api/streams/{stream.id}/pin", headers=stream.auth,
                                json={"sku": "nope"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_sku"


async def test_end_stream_is_final(client: httpx.AsyncClient, stream: HostedStream) -> None:
    r = await client.post(f"/api/streams/{stream.id}/end", headers=stream.auth)
    assert r.status_code == 200 and r.json()["status"] == "ended"
    assert r.json()["ended_at"] is not None
    seq_after_end = (await client.get(f"/api/streams/{stream.id}")).json()["seq"]

    again = await client.post(f"/api/streams/{stream.id}/end", headers=stream.auth)
    assert again.status_code == 200 and again.json()["ended_at"] == r.json()["ended_at"]
    # Ending twice broadcasts `stream.ended` once.
    assert (await client.get(f"/api/streams/{stream.id}")).json()["seq"] == seq_after_end

    late = await client.post(
        f"/api/streams/{stream.id}/products",
        headers=stream.auth,
        json={"sku": "late", "title": "Late", "price_cents": 1, "stock": 1},
    )
    assert late.status_code == 409 and late.json()["error"] == "stream_ended"
    msg = await client.post(f"/api/streams/{stream.id}/messages", headers=stream.auth,
                            json={"text": "hello?"})
    assert msg.status_code == 409


async def test_viewer_signup(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/viewers", json={"name": "Bo"})
    assert r.status_code == 201
    assert r.json()["viewer_id"].startswith("v_") and r.json()["token"]
    assert (await client.post("/api/viewers", json={"name": ""})).status_code == 400
    assert (await client.post("/api/viewers", json={"name": "x" * 51})).status_code == 400


# --- authentication -----------------------------------------------------------------


async def test_missing_and_forged_tokens_are_401(
    client: httpx.AsyncClient, stream: HostedStream
) -> None:
    url = f"/api/streams/{stream.id}/messages"
    body = {"text": "hi"}
    r = await client.post(url, json=body)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    forged = TokenSigner(b"not-the-secret").issue("host", stream.id, 60)
    r = await client.post(url, json=body, headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    r = await client.post(url, json=body, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
    tampered = stream.host_token[:-2] + ("AA" if stream.host_token[-2:] != "AA" else "BB")
    r = await client.post(url, json=body, headers={"Authorization": f"Bearer {tampered}"})
    assert r.status_code == 401


async def test_expired_token_is_401(client: httpx.AsyncClient, stream: HostedStream) -> None:
    signer = TokenSigner(TEST_SECRET.encode())
    # Issued two minutes ago with a one-minute lifetime.
    token = signer.issue("host", stream.id, 60, now=time.time() - 120)
    r = await client.post(f"/api/streams/{stream.id}/messages", json={"text": "hi"},
                          headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


async def test_wrong_stream_or_role_is_403(
    client: httpx.AsyncClient, stream: HostedStream
) -> None:
    other = await new_stream(client, "Other show")
    r = await client.post(f"/api/streams/{stream.id}/messages", json={"text": "hi"},
                          headers=other.auth)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    _, viewer_token = await new_viewer(client)
    r = await client.post(f"/api/streams/{stream.id}/pin", json={"sku": "x"},
                          headers={"Authorization": f"Bearer {viewer_token}"})
    assert r.status_code == 403


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b"[1, 2]", "invalid_body"),
        (b'"a string"', "invalid_body"),
        (b'{"title": "x"}', "invalid_body"),
        (b'{"title": 5, "host_name": "Ann"}', "invalid_body"),
        (b'{"title": "", "host_name": "Ann"}', "invalid_body"),
        (b'{"title": null, "host_name": "Ann"}', "invalid_body"),
    ],
)
async def test_bad_stream_bodies_are_400(
    client: httpx.AsyncClient, body: bytes, code: str
) -> None:
    r = await client.post("/api/streams", content=body,
                          headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == code and r.json()["detail"]


@pytest.mark.parametrize(
    "product",
    [
        {"sku": "a", "title": "A", "price_cents": -1, "stock": 1},
        {"sku": "a", "title": "A", "price_cents": 100, "stock": -5},
        {"sku": "a", "title": "A", "price_cents": "100", "stock": 1},
        {"sku": "a", "title": "A", "price_cents": 1.5, "stock": 1},
        {"sku": "a", "title": "A", "price_cents": 1, "stock": True},
        {"sku": "a", "title": "A", "price_cents": 1, "stock": 10**12},
        {"sku": "a", "title": "A", "price_cents": 1, "stock": 1, "per_user_limit": 0},
        {"sku": "has space", "title": "A", "price_cents": 1, "stock": 1},
        {"sku": "", "title": "A", "price_cents": 1, "stock": 1},
        {"title": "A", "price_cents": 1, "stock": 1},
    ],
)
async def test_bad_products_are_400(
    client: httpx.AsyncClient, stream: HostedStream, product: dict
) -> None:
    r = await client.post(f"/api/streams/{stream.id}/products", headers=stream.auth,
                          json=product)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_body"


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    big = b'{"title": "' + b"x" * (70 * 1024) + b'", "host_name": "Ann"}'
    r = await client.post("/api/streams", content=big,
                          headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"

    async def chunks():  # no Content-Length: the limit holds on the streamed body too
        for _ in range(20):
            yield b"x" * 8192

    r = await client.post("/api/streams", content=chunks())
    assert r.status_code == 413


async def test_unknown_ids_and_routes_are_404(
    client: httpx.AsyncClient, stream: HostedStream
) -> None:
    r = await client.get("/api/streams/s_doesnotexist")
    assert r.status_code == 404 and r.json()["error"] == "unknown_stream"
    r = await client.get("/api/nothing-here")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await client.delete("/api/streams")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


async def test_healthz_reports_redis_and_db(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert {k: r.json()[k] for k in ("status", "redis", "db")} == {
        "status": "ok", "redis": "ok", "db": "ok"
    }
