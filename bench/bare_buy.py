"""The anchor of bench/buy.py: about the least a buy endpoint can be on the same stack.

    BARE_SECRET=... BARE_REDIS_URL=... uvicorn bench.bare_buy:app --workers 2

Starlette on uvicorn (uvloop, httptools), redis-py asyncio with hiredis. `POST
/buy/{sid}` checks the HMAC bearer token (livecart's token format and key, so the same
tokens work here and on `live serve`), parses and checks the JSON body and runs the real
`reserve.lua` once (EVALSHA) for that one buy, answering 201 with the script's
reservation JSON as it comes. `/ws/{sid}?token=` is the same on a Starlette websocket:
the token checked once at connect, then per `{"type":"buy",...}` text frame one script
run and one `reservation` text frame back. No batching, metrics, logging, stock
messages, drainer or error mapping beyond a bare status: what livecart adds is measured
against this.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from typing import Any

import orjson
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from inventory import keys
from inventory.scripts import load

KEY = hmac.new(os.environ["BARE_SECRET"].encode(), b"livecart bearer token v1",
               hashlib.sha256).digest()
redis = Redis.from_url(os.environ["BARE_REDIS_URL"], max_connections=100)
reserve = load("reserve.lua").register(redis)


def viewer_of(token: str) -> str | None:
    body, _, sig = token.encode().partition(b".")
    good = base64.urlsafe_b64encode(hmac.new(KEY, body, hashlib.sha256).digest()).rstrip(b"=")
    if not hmac.compare_digest(good, sig):
        return None
    claims = orjson.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
    return claims["s"] if claims["r"] == "viewer" and claims["e"] > time.time() else None


async def run_buy(sid: str, viewer: str, b: Any) -> tuple[bytes, bytes]:
    if not (isinstance(b, dict) and isinstance(b.get("sku"), str) and isinstance(b.get("key"), str)
            and type(b.get("qty")) is int and 1 <= b["qty"] <= 1000):
        return b"invalid_body", b""
    rid = f"r_{sid[2:]}{secrets.token_hex(8)}"
    outcome, raw, _, _ = await reserve(
        keys=[*keys.script_keys(sid), f"live:{{{sid}}}:meta", keys.buy_rate(sid, viewer)],
        args=[600_000, 0, 1000, sid, "", f"rt:{{{sid}}}", viewer, b["sku"], b["qty"], b["key"],
              rid, "", "", int(time.time() * 1000)],
    )
    return outcome, raw


async def buy(request: Request) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    viewer = viewer_of(token) if scheme == "Bearer" else None
    if viewer is None:
        return Response(b'{"error":"unauthorized"}', 401, media_type="application/json")
    outcome, raw = await run_buy(request.path_params["sid"], viewer,
                                 orjson.loads(await request.body()))
    if outcome != b"created":
        return Response(b'{"error":"%s"}' % outcome, 409, media_type="application/json")
    return Response(raw, 201, media_type="application/json")


async def buy_socket(ws: WebSocket) -> None:
    viewer = viewer_of(ws.query_params.get("token", ""))
    if viewer is None:
        await ws.close(1008)
        return
    await ws.accept()
    sid = ws.path_params["sid"]
    while True:
        msg = orjson.loads(await ws.receive_text())
        outcome, raw = await run_buy(sid, viewer, msg)
        ts = int(time.time() * 1000)
        if outcome == b"created":
            out = b'{"type":"reservation","seq":null,"ts":%d,"data":%s}' % (ts, raw)
        else:
            out = b'{"type":"error","seq":null,"ts":%d,"data":{"code":"%s"}}' % (ts, outcome)
        await ws.send_text(out.decode())


app = Starlette(routes=[Route("/buy/{sid}", buy, methods=["POST"]),
                        WebSocketRoute("/ws/{sid}", buy_socket)])
