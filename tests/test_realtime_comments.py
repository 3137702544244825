"""Comments on the websocket hub against two real `live serve` processes sharing one
Redis: every viewer on either process gets them, in either subprotocol; who may comment,
how long, and how often (a window counted in Redis, shared by a viewer's sockets)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgpack
import pytest
from helpers.api import host_says, new_viewer
from helpers.chat import (
    MAX_CHARS,
    PER_WINDOW,
    WINDOW_S,
    comments_until,
    error_code,
    recv_comment,
    say,
    tap,
)
from helpers.ws import close_all, connect, decode, join, recv, recv_type
from redis.asyncio import Redis

from realtime import keys as rt_keys

# The chat modules share one pair of processes (tests/conftest.py: chat_pair).
pytestmark = pytest.mark.xdist_group("chat")


async def test_comment_reaches_every_viewer_on_both_processes(
    chat_pair, chat_api, chat_stream
) -> None:
    a, b = chat_pair
    vid, token = await new_viewer(chat_api, "Cleo")
    author = await join(a, chat_stream.id, token)
    watchers = [
        await join(a, chat_stream.id),
        await join(b, chat_stream.id),
        await join(b, chat_stream.id),
    ]
    await say(author, "  love this jacket  ")
    for ws in [author, *watchers]:
        msg = await recv_type(ws, "comment")
        assert isinstance(msg["seq"], int)
        data = msg["data"]
        assert data["user"] == {"id": vid, "name": "Cleo"}
        assert data["text"] == "love this jacket"
        assert isinstance(data["id"], str) and data["id"]
    await close_all(author, *watchers)


async def test_comment_without_token_is_unauthorized(chat_pair, chat_api, chat_stream) -> None:
    a, b = chat_pair
    anon = await join(a, chat_stream.id)
    watcher = await join(b, chat_stream.id)
    await say(anon, "hello")
    assert await error_code(anon) == "unauthorized"
    # Nothing was broadcast: the next message the watcher sees is the host's.
    seq = await host_says(chat_api, chat_stream, "marker")
    assert await comments_until(watcher, seq) == []
    await close_all(anon, watcher)


async def test_comment_over_max_length_is_refused(chat_pair, chat_api, chat_stream) -> None:
    a, b = chat_pair
    _, token = await new_viewer(chat_api)
    viewer = await join(a, chat_stream.id, token)
    watcher = await join(b, chat_stream.id)
    await say(viewer, "x" * (MAX_CHARS + 1))
    assert await error_code(viewer) == "comment_too_long"
    await say(viewer, "y" * MAX_CHARS)  # exactly the limit is fine
    msg = await recv_type(watcher, "comment")
    assert msg["data"]["text"] == "y" * MAX_CHARS
    await close_all(viewer, watcher)


async def test_comment_rate_limit_hits_only_the_fast_viewer(
    chat_pair, chat_api, chat_stream, redis: Redis
) -> None:
    a, b = chat_pair
    fast_id, fast_token = await new_viewer(chat_api, "Fast")
    _, calm_token = await new_viewer(chat_api, "Calm")
    fast = await join(a, chat_stream.id, fast_token)
    calm = await join(b, chat_stream.id, calm_token)
    watcher = await join(b, chat_stream.id)
    started = time.monotonic()
    for i in range(PER_WINDOW + 2):
        await say(fast, f"spam {i}")
    errors = [(await recv_type(fast, "error"))["data"] for _ in range(2)]
    assert [e["code"] for e in errors] == ["rate_limited", "rate_limited"]
    # At least one refusal is the per-viewer comment window (not only the in-flight cap).
    assert any("comments" in e["detail"] for e in errors), errors
    # The neighbour on the other process comments freely meanwhile.
    await say(calm, "calm words")
    seq = (await recv_comment(calm, "calm words"))["seq"]
    texts = [c["text"] for c in await comments_until(watcher, seq)]
    # Requests run concurrently, so which spam got through may vary; how many may not.
    spam = [t for t in texts if t.startswith("spam ")]
    assert len(spam) == len(set(spam)) == PER_WINDOW, texts
    assert "calm words" in texts
    assert time.monotonic() - started < WINDOW_S, "test too slow to prove the window"
    # After the window (its counter in Redis expires with it) the viewer may speak again.
    deadline = time.monotonic() + WINDOW_S * 3
    while await redis.exists(rt_keys.comment_rate(chat_stream.id, fast_id)):
        assert time.monotonic() < deadline, "the comment window never ended"
        await asyncio.sleep(0.05)
    await say(fast, "again")
    await recv_comment(watcher, "again")
    await close_all(fast, calm, watcher)


async def test_comment_rate_limit_is_shared_by_a_viewers_sockets_on_both_processes(
    chat_pair, chat_api, chat_stream
) -> None:
    a, b = chat_pair
    _, token = await new_viewer(chat_api, "Twin")
    on_a, on_b = await join(a, chat_stream.id, token), await join(b, chat_stream.id, token)
    watcher = await join(a, chat_stream.id)
    for i in range(PER_WINDOW):
        await say(on_a if i % 2 == 0 else on_b, f"twin {i}")
        await recv_comment(watcher, f"twin {i}")
    # The window is counted in Redis, so switching process does not reset it.
    await say(on_b, "one more")
    assert await error_code(on_b) == "rate_limited"
    await say(on_a, "and another")
    assert await error_code(on_a) == "rate_limited"
    await close_all(on_a, on_b, watcher)


async def test_host_socket_cannot_comment_or_like(chat_pair, chat_api, chat_stream) -> None:
    a, _ = chat_pair
    host = await join(a, chat_stream.id, chat_stream.host_token)
    await say(host, "from the host socket")
    assert await error_code(host) == "forbidden"
    await tap(host)
    assert await error_code(host) == "forbidden"
    anon = await join(a, chat_stream.id)
    await tap(anon)
    assert await error_code(anon) == "unauthorized"
    await close_all(host, anon)


async def test_msgpack_viewer_comments_and_likes_reach_both_subprotocols(
    chat_pair, chat_api, chat_stream
) -> None:
    a, b = chat_pair
    vid, token = await new_viewer(chat_api, "Packer")
    sender = await connect(a, chat_stream.id, token, proto="live.msgpack")
    assert sender.subprotocol == "live.msgpack"
    assert (await recv(sender))["type"] == "hello"
    watchers = {
        "json on A": await connect(a, chat_stream.id, proto="live.json"),
        "msgpack on B": await connect(b, chat_stream.id, proto="live.msgpack"),
        "json on B": await connect(b, chat_stream.id, proto="live.json"),
    }
    for ws in watchers.values():
        assert (await recv(ws))["type"] == "hello"
    await sender.send(msgpack.packb({"type": "comment", "text": "packed words"}))
    await sender.send(msgpack.packb({"type": "like"}))
    for name, ws in {"sender": sender, **watchers}.items():
        binary = ws.subprotocol == "live.msgpack"
        seen: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 5
        while len(seen) < 2:
            raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
            # Each subprotocol keeps its own frame kind for broadcast messages too.
            assert isinstance(raw, bytes) is binary, (name, raw)
            msg = decode(raw)
            if msg["type"] in ("comment", "likes"):
                seen[msg["type"]] = msg
        comment, likes = seen["comment"], seen["likes"]
        assert comment["data"]["text"] == "packed words", name
        assert comment["data"]["user"] == {"id": vid, "name": "Packer"}, name
        assert isinstance(comment["seq"], int)
        assert likes["data"] == {"count": 1, "total": 1}, name
    await close_all(sender, *watchers.values())
