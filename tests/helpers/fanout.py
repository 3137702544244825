"""Many viewers joining many streams at once on a fresh process: every one hears every
broadcast (used by the realtime and cluster tests)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import websockets

from helpers.api import new_stream
from helpers.services import ServiceProcess

STREAMS = 24
VIEWERS_PER_STREAM = 4


async def until_type(ws: websockets.ClientConnection, kind: str, deadline: float) -> dict[str, Any]:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(kind)
        msg = orjson.loads(await asyncio.wait_for(ws.recv(), left))
        if msg["type"] == kind:
            return msg


async def check_concurrent_joins(
    svc: ServiceProcess, streams: int = STREAMS, viewers: int = VIEWERS_PER_STREAM
) -> None:
    """Open `streams` x `viewers` sockets at the same moment on `svc` (fresh: none of the
    streams has been joined there yet), then one host message per stream: every viewer
    must get its stream's message, with a seq above the one its `hello` carried."""
    async with httpx.AsyncClient(base_url=svc.url, timeout=15) as api:
        hosted = await asyncio.gather(*(new_stream(api, f"race {i}") for i in range(streams)))
        sockets: list[tuple[str, websockets.ClientConnection]] = []

        async def join(sid: str) -> tuple[str, websockets.ClientConnection, int]:
            ws = await websockets.connect(
                f"{svc.ws_url}/ws/streams/{sid}", open_timeout=20, max_queue=None
            )
            hello = await until_type(ws, "hello", time.monotonic() + 20)
            return sid, ws, int(hello["seq"])

        joined = await asyncio.gather(
            *(join(s.id) for s in hosted for _ in range(viewers)), return_exceptions=True
        )
        try:
            for item in joined:
                if isinstance(item, BaseException):
                    raise item
                sockets.append((item[0], item[1]))
            hello_seq = {(item[0], id(item[1])): item[2] for item in joined}  # type: ignore[index]
            sent: dict[str, int] = {}
            for s in hosted:
                r = await api.post(
                    f"/api/streams/{s.id}/messages", headers=s.auth, json={"text": f"hi {s.id}"}
                )
                assert r.status_code == 202, r.text
                sent[s.id] = r.json()["seq"]

            async def hear(sid: str, ws: websockets.ClientConnection) -> str | None:
                try:
                    msg = await until_type(ws, "host.message", time.monotonic() + 10)
                except TimeoutError:
                    return sid
                assert msg["data"]["text"] == f"hi {sid}"
                assert msg["seq"] == sent[sid] > hello_seq[(sid, id(ws))]
                return None

            missed = [m for m in await asyncio.gather(*(hear(*p) for p in sockets)) if m]
            assert not missed, (
                f"{len(missed)} of {len(sockets)} viewers missed their stream's message "
                f"({len(set(missed))} of {streams} streams)"
            )
        finally:
            await asyncio.gather(*(ws.close() for _, ws in sockets), return_exceptions=True)
            for item in joined:
                if not isinstance(item, BaseException):
                    await item[1].close()
