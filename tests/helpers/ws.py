"""Websocket client helpers for the hub tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
import orjson
import websockets

from helpers.services import ServiceProcess


def ws_url(svc: ServiceProcess, sid: str, token: str | None = None) -> str:
    url = f"{svc.ws_url}/ws/streams/{sid}"
    return url + (f"?token={token}" if token else "")


async def connect(
    svc: ServiceProcess, sid: str, token: str | None = None, proto: str = "live.json"
) -> websockets.ClientConnection:
    return await websockets.connect(
        ws_url(svc, sid, token), subprotocols=[proto], max_size=2**22, open_timeout=10,
        # Keep reading (and answering pings) while the test is busy elsewhere.
        max_queue=None,
    )


def decode(raw: str | bytes) -> dict[str, Any]:
    return msgpack.unpackb(raw) if isinstance(raw, bytes) else orjson.loads(raw)


async def recv(ws: websockets.ClientConnection, wait: float = 5.0) -> dict[str, Any]:
    return decode(await asyncio.wait_for(ws.recv(), wait))


async def recv_type(
    ws: websockets.ClientConnection, type_: str, wait: float = 5.0
) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        msg = await recv(ws, max(0.01, deadline - time.monotonic()))
        if msg["type"] == type_:
            return msg


async def collect_host_messages(
    ws: websockets.ClientConnection, n: int, wait: float = 20.0
) -> list[tuple[int, str]]:
    got: list[tuple[int, str]] = []
    deadline = time.monotonic() + wait
    while len(got) < n:
        msg = await recv(ws, max(0.01, deadline - time.monotonic()))
        if msg["type"] == "host.message":
            got.append((msg["seq"], msg["data"]["text"]))
    return got


async def collect_until(
    ws: websockets.ClientConnection, last_seq: int, wait: float = 20.0
) -> list[dict[str, Any]]:
    """Every broadcast message up to and including `last_seq`."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while not got or got[-1]["seq"] < last_seq:
        msg = await recv(ws, max(0.01, deadline - time.monotonic()))
        if msg["seq"] is not None and msg["type"] != "hello":
            got.append(msg)
    return got


async def join(
    svc: ServiceProcess, sid: str, token: str | None = None
) -> websockets.ClientConnection:
    """A connected socket that has had its `hello`."""
    ws = await connect(svc, sid, token)
    assert (await recv(ws))["type"] == "hello"
    return ws


async def close_all(*sockets: websockets.ClientConnection) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets))
