"""Chat on the websocket hub: the settings of the chat tests' pair of service processes
(tests/conftest.py: `chat_pair`), and comments, likes and errors over a socket."""

from __future__ import annotations

import time
from typing import Any

import orjson
import websockets

from helpers.ws import collect_until, recv_type

MAX_CHARS = 40
PER_WINDOW = 3
WINDOW_S = 2.0

CHAT_ENV = {
    "LIVE_WS_MAX_COMMENT_CHARS": str(MAX_CHARS),
    "LIVE_WS_COMMENTS_PER_WINDOW": str(PER_WINDOW),
    "LIVE_WS_COMMENT_WINDOW_S": str(WINDOW_S),
    "LIVE_WS_LIKES_PER_S": "20",
}


async def say(ws: websockets.ClientConnection, text: str) -> None:
    await ws.send(orjson.dumps({"type": "comment", "text": text}).decode())


async def tap(ws: websockets.ClientConnection) -> None:
    await ws.send(orjson.dumps({"type": "like"}).decode())


async def recv_comment(
    ws: websockets.ClientConnection, text: str, wait: float = 5.0
) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        msg = await recv_type(ws, "comment", max(0.01, deadline - time.monotonic()))
        if msg["data"]["text"] == text:
            return msg


async def error_code(ws: websockets.ClientConnection, wait: float = 5.0) -> str:
    msg = await recv_type(ws, "error", wait)
    assert msg["seq"] is None
    return str(msg["data"]["code"])


async def comments_until(ws: websockets.ClientConnection, last_seq: int) -> list[dict[str, Any]]:
    return [m["data"] for m in await collect_until(ws, last_seq) if m["type"] == "comment"]
