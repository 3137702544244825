"""The websocket `buy` message: the same reservation, errors and idempotency as HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import websockets
from helpers.api import HostedStream, new_viewer
from helpers.services import ServiceProcess
from helpers.ws import connect, recv

# The newest `stock` value each socket has seen per sku, also from messages `next_of`
# passed over while waiting for another type (the last one may come before a reply).
STOCK_SEEN: dict[tuple[int, str], int] = {}


async def next_of(ws: websockets.ClientConnection, *types: str, wait: float = 5.0) -> dict:
    deadline = time.monotonic() + wait
    while True:
        msg = await recv(ws, max(0.01, deadline - time.monotonic()))
        if msg["type"] == "stock":
            STOCK_SEEN[(id(ws), msg["data"]["sku"])] = msg["data"]["left"]
        if msg["type"] in types:
            return msg


async def buy(ws: websockets.ClientConnection, **body: Any) -> dict:
    await ws.send(json.dumps({"type": "buy", **body}))
    return await next_of(ws, "reservation", "error")


async def test_buy_over_websocket_matches_http(
    service: ServiceProcess, client: httpx.AsyncClient, stream: HostedStream
) -> None:
    r = await client.post(
        f"/api/streams/{stream.id}/products",
        json={"sku": "W", "title": "Lamp", "price_cents": 900, "stock": 3, "per_user_limit": 2},
        headers=stream.auth,
    )
    assert r.status_code == 201, r.text
    _, t1 = await new_viewer(client, "one")
    _, t2 = await new_viewer(client, "two")
    ws1, ws2 = await connect(service, stream.id, t1), await connect(service, stream.id, t2)
    try:
        await next_of(ws1, "hello")
        await next_of(ws2, "hello")
        got = await buy(ws1, sku="W", qty=2, key="a")
        assert got["type"] == "reservation" and got["seq"] is None, got
        res = got["data"]
        assert res["qty"] == 2 and res["price_cents"] == 900 and res["status"] == "reserved"
        again = await buy(ws1, sku="W", qty=2, key="a")
        assert again["data"]["id"] == res["id"]
        # The same key over HTTP is the same reservation: one idempotency space.
        http = await client.post(
            f"/api/streams/{stream.id}/reservations",
            json={"sku": "W", "qty": 2, "key": "a"},
            headers={"Authorization": f"Bearer {t1}"},
        )
        assert http.status_code == 200 and http.json()["id"] == res["id"]
        # A reservation touched over HTTP is also told to the buyer's open sockets.
        echo = await next_of(ws1, "reservation")
        assert echo["seq"] is None and echo["data"]["id"] == res["id"]

        cases = [
            (ws1, {"sku": "W", "qty": 1, "key": "b"}, "limit_exceeded"),
            (ws1, {"sku": "W", "qty": 1, "key": "a"}, "idempotency_conflict"),
            (ws2, {"sku": "W", "qty": 2, "key": "c"}, "sold_out"),
            (ws2, {"sku": "NOPE", "qty": 1, "key": "d"}, "unknown_sku"),
            (ws2, {"sku": "W", "qty": 0, "key": "e"}, "invalid_body"),
            (ws2, {"sku": "W", "qty": 2.5, "key": "f"}, "invalid_body"),
            (ws2, {"sku": "W", "qty": 10**40, "key": "g"}, "invalid_body"),
            (ws2, {"sku": "W", "key": "h"}, "invalid_body"),
        ]
        for ws, body, code in cases:
            msg = await buy(ws, **body)
            assert msg["type"] == "error" and msg["data"]["code"] == code, (body, msg)
        last = await buy(ws2, sku="W", qty=1, key="i")
        assert last["type"] == "reservation"
        # Watchers see the stock fall to zero (coalesced, but the last value always).
        deadline = time.monotonic() + 10
        while STOCK_SEEN.get((id(ws2), "W")) != 0:
            assert time.monotonic() < deadline, STOCK_SEEN.get((id(ws2), "W"))
            await next_of(ws2, "stock", wait=deadline - time.monotonic())
    finally:
        await ws1.close()
        await ws2.close()
