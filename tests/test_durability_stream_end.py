"""`stream.ended` reaches viewers even if the process that ended the stream dies right
after answering: the end and its broadcast are one Redis script (inventory/streams.py)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import ServiceProcess, new_stream, new_viewer, service_env
from redis.asyncio import Redis
from test_realtime_hub import connect, recv, recv_type

from inventory.streams import StreamStore
from realtime import keys as rt_keys


@pytest.mark.slow
async def test_viewer_on_another_process_gets_stream_ended_when_the_ender_is_killed(
    redis_url: str, sqlite_url: str, tmp_path: Path
) -> None:
    env = service_env(redis_url, sqlite_url)
    ender = ServiceProcess(env=dict(env)).start(tmp_path)
    other = ServiceProcess(env=dict(env)).start(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=ender.url, timeout=10) as api:
            stream = await new_stream(api)
            r = await api.post(f"/api/streams/{stream.id}/products", headers=stream.auth, json={
                "sku": "cap", "title": "cap", "price_cents": 900, "stock": 5})
            assert r.status_code == 201, r.text
            r = await api.post(f"/api/streams/{stream.id}/sales", headers=stream.auth, json={
                "sku": "cap", "price_cents": 500, "stock": 3, "duration_s": 600})
            assert r.status_code == 201, r.text
            _, token = await new_viewer(api)
            ws = await connect(other, stream.id, token)
            hello = await recv(ws)
            assert hello["type"] == "hello"
            r = await api.post(f"/api/streams/{stream.id}/end", headers=stream.auth)
            assert r.status_code == 200, r.text
            ender.proc.send_signal(signal.SIGKILL)  # right after the answer
            sale_ended = await recv_type(ws, "sale.ended", 10)
            ended = await recv_type(ws, "stream.ended", 10)
            assert ended["seq"] > sale_ended["seq"], "the sale closes before the stream"
            assert ended["data"]["ended_at"] == r.json()["ended_at"]
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1000
    finally:
        ender.stop()
        other.stop()


async def test_ending_a_stream_broadcasts_in_the_same_step(redis: Redis) -> None:
    """No process has to publish `stream.ended` after the end: the script that ends the
    stream has put it on the channel and in the history, once."""
    store = StreamStore(redis, history_size=100)
    stream = await store.create("t", "Ann")
    pubsub = redis.pubsub()
    await pubsub.ssubscribe(rt_keys.channel(stream.id))  # sharded, as the hub
    try:
        confirmation = await pubsub.get_message(timeout=5)
        assert confirmation is not None and confirmation["type"] == "ssubscribe"
        ended = await store.end(stream.id)
        assert ended is not None and ended.status == "ended"
        msg = await pubsub.get_message(timeout=5)
        assert msg is not None
        body = orjson.loads(msg["data"])
        assert body["type"] == "stream.ended"
        assert body["data"] == {"ended_at": ended.ended_at}
        history = await redis.xrange(rt_keys.history(stream.id))
        assert [orjson.loads(f["m"])["type"] for _, f in history] == ["stream.ended"]
        # Ending again changes nothing and broadcasts nothing.
        assert await store.end(stream.id) is None
        assert await pubsub.get_message(timeout=0.5) is None
        assert len(await redis.xrange(rt_keys.history(stream.id))) == 1
    finally:
        await pubsub.aclose()
