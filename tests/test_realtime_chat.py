"""Chat on the websocket hub against two real `live serve` processes sharing one Redis:
comments, their limits, host moderation, aggregated likes and the viewer count."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgpack
import orjson
import pytest
import websockets
from conftest import HostedStream, ServiceProcess, new_stream, new_viewer, service_env, service_pair
from test_realtime_hub import collect_until, connect, decode, host_says, recv, recv_type

MAX_CHARS = 40
PER_WINDOW = 3
WINDOW_S = 2.0

CHAT_ENV = {
    "LIVE_WS_MAX_COMMENT_CHARS": str(MAX_CHARS),
    "LIVE_WS_COMMENTS_PER_WINDOW": str(PER_WINDOW),
    "LIVE_WS_COMMENT_WINDOW_S": str(WINDOW_S),
    "LIVE_WS_LIKES_PER_S": "20",
}


@pytest.fixture(scope="module")
def chat_pair(
    redis_url: str, sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    env = service_env(redis_url, sqlite_url, **CHAT_ENV)
    log_dir = tmp_path_factory.mktemp("chat")
    with service_pair(env, log_dir) as pair:
        yield pair


@pytest.fixture
async def api(chat_pair: tuple[ServiceProcess, ServiceProcess]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=chat_pair[0].url, timeout=10) as c:
        yield c


@pytest.fixture
async def live(api: httpx.AsyncClient) -> HostedStream:
    return await new_stream(api)


async def join(
    svc: ServiceProcess, sid: str, token: str | None = None
) -> websockets.ClientConnection:
    ws = await connect(svc, sid, token)
    assert (await recv(ws))["type"] == "hello"
    return ws


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


async def close_all(*sockets: websockets.ClientConnection) -> None:
    await asyncio.gather(*(ws.close() for ws in sockets))


async def test_comment_reaches_every_viewer_on_both_processes(chat_pair, api, live) -> None:
    a, b = chat_pair
    vid, token = await new_viewer(api, "Cleo")
    author = await join(a, live.id, token)
    watchers = [await join(a, live.id), await join(b, live.id), await join(b, live.id)]
    await say(author, "  love this jacket  ")
    for ws in [author, *watchers]:
        msg = await recv_type(ws, "comment")
        assert isinstance(msg["seq"], int)
        data = msg["data"]
        assert data["user"] == {"id": vid, "name": "Cleo"}
        assert data["text"] == "love this jacket"
        assert isinstance(data["id"], str) and data["id"]
    await close_all(author, *watchers)


async def test_comment_without_token_is_unauthorized(chat_pair, api, live) -> None:
    a, b = chat_pair
    anon = await join(a, live.id)
    watcher = await join(b, live.id)
    await say(anon, "hello")
    assert await error_code(anon) == "unauthorized"
    # Nothing was broadcast: the next message the watcher sees is the host's.
    seq = await host_says(api, live, "marker")
    assert await comments_until(watcher, seq) == []
    await close_all(anon, watcher)


async def test_comment_over_max_length_is_refused(chat_pair, api, live) -> None:
    a, b = chat_pair
    _, token = await new_viewer(api)
    viewer = await join(a, live.id, token)
    watcher = await join(b, live.id)
    await say(viewer, "x" * (MAX_CHARS + 1))
    assert await error_code(viewer) == "comment_too_long"
    await say(viewer, "y" * MAX_CHARS)  # exactly the limit is fine
    msg = await recv_type(watcher, "comment")
    assert msg["data"]["text"] == "y" * MAX_CHARS
    await close_all(viewer, watcher)


async def test_comment_rate_limit_hits_only_the_fast_viewer(chat_pair, api, live) -> None:
    a, b = chat_pair
    _, fast_token = await new_viewer(api, "Fast")
    _, calm_token = await new_viewer(api, "Calm")
    fast = await join(a, live.id, fast_token)
    calm = await join(b, live.id, calm_token)
    watcher = await join(b, live.id)
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
    # After the window the fast viewer may speak again.
    await asyncio.sleep(WINDOW_S + 0.2)
    await say(fast, "again")
    await recv_comment(watcher, "again")
    await close_all(fast, calm, watcher)


async def test_banned_words_are_rejected_case_insensitively(chat_pair, api, live) -> None:
    a, b = chat_pair
    r = await api.put(
        f"/api/streams/{live.id}/banned-words", json={"words": ["Scam", "fake"]}, headers=live.auth
    )
    assert r.status_code == 200, r.text
    assert r.json()["words"] == ["fake", "scam"]
    _, token = await new_viewer(api)
    viewer = await join(b, live.id, token)
    watcher = await join(a, live.id)
    await say(viewer, "this is a SCAMMY deal")
    assert await error_code(viewer) == "comment_rejected"
    await say(viewer, "genuine leather")
    msg = await recv_type(watcher, "comment")
    assert msg["data"]["text"] == "genuine leather"
    # Clearing the list lets the word through again.
    r = await api.put(f"/api/streams/{live.id}/banned-words", json={"words": []}, headers=live.auth)
    assert r.status_code == 200 and r.json()["words"] == []
    await say(viewer, "not a scam")
    assert (await recv_type(watcher, "comment"))["data"]["text"] == "not a scam"
    await close_all(viewer, watcher)


async def test_host_mute_and_unmute(chat_pair, api, live) -> None:
    a, b = chat_pair
    vid, token = await new_viewer(api, "Loud")
    viewer = await join(a, live.id, token)
    watcher = await join(b, live.id)
    r = await api.post(f"/api/streams/{live.id}/mutes", json={"viewer_id": vid}, headers=live.auth)
    assert r.status_code == 201, r.text
    r = await api.get(f"/api/streams/{live.id}/mutes", headers=live.auth)
    assert r.json()["viewer_ids"] == [vid]
    await say(viewer, "muted words")
    assert await error_code(viewer) == "muted"
    seq = await host_says(api, live, "marker")
    assert await comments_until(watcher, seq) == []
    r = await api.delete(f"/api/streams/{live.id}/mutes/{vid}", headers=live.auth)
    assert r.status_code == 200, r.text
    r = await api.delete(f"/api/streams/{live.id}/mutes/{vid}", headers=live.auth)
    assert r.status_code == 404
    await say(viewer, "back again")
    assert (await recv_type(watcher, "comment"))["data"]["text"] == "back again"
    await close_all(viewer, watcher)


async def test_host_delete_broadcasts_comment_deleted(chat_pair, api, live) -> None:
    a, b = chat_pair
    _, token = await new_viewer(api)
    viewer = await join(a, live.id, token)
    watchers = [await join(a, live.id), await join(b, live.id)]
    await say(viewer, "rude remark")
    comment = await recv_type(viewer, "comment")
    cid = comment["data"]["id"]
    r = await api.delete(f"/api/streams/{live.id}/comments/{cid}", headers=live.auth)
    assert r.status_code == 200, r.text
    for ws in [viewer, *watchers]:
        msg = await recv_type(ws, "comment.deleted")
        assert msg["data"] == {"id": cid}
        assert msg["seq"] > comment["seq"]
    await close_all(viewer, *watchers)


async def test_moderation_endpoints_need_this_streams_host(chat_pair, api, live) -> None:
    other = await new_stream(api, "Other show")
    _, viewer_token = await new_viewer(api)
    viewer_auth = {"Authorization": f"Bearer {viewer_token}"}
    calls = [
        ("DELETE", f"/api/streams/{live.id}/comments/c_1", None),
        ("POST", f"/api/streams/{live.id}/mutes", {"viewer_id": "v_1"}),
        ("GET", f"/api/streams/{live.id}/mutes", None),
        ("DELETE", f"/api/streams/{live.id}/mutes/v_1", None),
        ("PUT", f"/api/streams/{live.id}/banned-words", {"words": ["x"]}),
        ("GET", f"/api/streams/{live.id}/banned-words", None),
    ]
    for method, path, body in calls:
        r = await api.request(method, path, json=body)
        assert r.status_code == 401, (method, path, r.text)
        for headers in (viewer_auth, other.auth):
            r = await api.request(method, path, json=body, headers=headers)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"] == "forbidden"
    # Nothing above took effect.
    r = await api.get(f"/api/streams/{live.id}/banned-words", headers=live.auth)
    assert r.json()["words"] == []


async def test_likes_from_both_processes_are_aggregated(chat_pair, api, live) -> None:
    a, b = chat_pair
    tappers = []
    for svc in (a, a, b, b):
        _, token = await new_viewer(api)
        tappers.append(await join(svc, live.id, token))
    observers = [await join(a, live.id), await join(b, live.id)]
    taps_each, gap_s = 15, 0.05

    async def tapping(ws: websockets.ClientConnection) -> None:
        for _ in range(taps_each):
            await tap(ws)
            await asyncio.sleep(gap_s)

    await asyncio.gather(*(tapping(ws) for ws in tappers))
    expected = taps_each * len(tappers)
    for obs in observers:
        got: list[dict[str, Any]] = []
        while not got or got[-1]["data"]["total"] < expected:
            got.append(await recv_type(obs, "likes", 5))
        assert got[-1]["data"]["total"] == expected
        assert sum(m["data"]["count"] for m in got) == expected
        # Aggregated: far fewer messages than taps, no more than one per ~200 ms.
        assert len(got) <= expected // 5
        stamps = [m["ts"] for m in got]
        assert len(got) <= (stamps[-1] - stamps[0]) / 200 + 2, stamps
        # Timestamps are taken just before the gate is checked, hence some slack.
        assert all(b_ - a_ >= 120 for a_, b_ in itertools.pairwise(stamps)), stamps
    # No tapper was refused (15 taps in 0.75 s is under 20 per second).
    for ws in tappers:
        with pytest.raises(TimeoutError):
            await recv_type(ws, "error", 0.2)
    await close_all(*tappers, *observers)


async def test_viewer_count_spans_both_processes(chat_pair, api, live) -> None:
    a, b = chat_pair
    on_a = [await join(a, live.id) for _ in range(2)]
    on_b = [await join(b, live.id) for _ in range(3)]

    async def wait_count(ws: websockets.ClientConnection, n: int) -> None:
        deadline = time.monotonic() + 8
        while True:
            msg = await recv_type(ws, "viewers", max(0.01, deadline - time.monotonic()))
            if msg["data"]["count"] == n:
                return

    await asyncio.gather(wait_count(on_a[0], 5), wait_count(on_b[0], 5))
    await close_all(*on_b[1:])
    await asyncio.gather(wait_count(on_a[0], 3), wait_count(on_b[0], 3))
    await close_all(*on_a, on_b[0])


async def test_comment_rate_limit_is_shared_by_a_viewers_sockets_on_both_processes(
    chat_pair, api, live
) -> None:
    a, b = chat_pair
    _, token = await new_viewer(api, "Twin")
    on_a, on_b = await join(a, live.id, token), await join(b, live.id, token)
    watcher = await join(a, live.id)
    for i in range(PER_WINDOW):
        await say(on_a if i % 2 == 0 else on_b, f"twin {i}")
        await recv_comment(watcher, f"twin {i}")
    # The window is counted in Redis, so switching process does not reset it.
    await say(on_b, "one more")
    assert await error_code(on_b) == "rate_limited"
    await say(on_a, "and another")
    assert await error_code(on_a) == "rate_limited"
    await close_all(on_a, on_b, watcher)


async def test_host_socket_cannot_comment_or_like(chat_pair, api, live) -> None:
    a, _ = chat_pair
    host = await join(a, live.id, live.host_token)
    await say(host, "from the host socket")
    assert await error_code(host) == "forbidden"
    await tap(host)
    assert await error_code(host) == "forbidden"
    anon = await join(a, live.id)
    await tap(anon)
    assert await error_code(anon) == "unauthorized"
    await close_all(host, anon)


async def test_like_flood_is_rate_limited_and_neighbour_still_counts(chat_pair, api, live) -> None:
    a, b = chat_pair
    _, flood_token = await new_viewer(api, "Flood")
    _, calm_token = await new_viewer(api, "Calm")
    flood = await join(a, live.id, flood_token)
    calm = await join(b, live.id, calm_token)
    observer = await join(b, live.id)
    await asyncio.gather(*(tap(flood) for _ in range(60)))
    assert await error_code(flood) == "rate_limited"
    for _ in range(5):
        await tap(calm)
    # Taps past 20 in a second are dropped: at most 2 seconds' worth counted.
    deadline = time.monotonic() + 5
    total = 0
    while time.monotonic() < deadline:
        try:
            total = (await recv_type(observer, "likes", 1.0))["data"]["total"]
        except TimeoutError:
            break
    assert 20 + 5 <= total <= 40 + 5, total
    with pytest.raises(TimeoutError):
        await recv_type(calm, "error", 0.2)
    await close_all(flood, calm, observer)


async def test_likes_are_limited_per_viewer_not_per_socket(chat_pair, api, live) -> None:
    a, b = chat_pair
    _, token = await new_viewer(api, "Many")
    sockets = [await join(a, live.id, token) for _ in range(4)]
    observer = await join(b, live.id)
    # 20 taps on each socket: each socket alone is within 20 per second, the viewer not.
    started = time.monotonic()
    await asyncio.gather(*(tap(ws) for ws in sockets for _ in range(20)))
    sent_in = time.monotonic() - started
    refused = 0
    for ws in sockets:
        with contextlib.suppress(TimeoutError):
            while True:
                if await error_code(ws, 1.0) == "rate_limited":
                    refused += 1
    total = 0
    with contextlib.suppress(TimeoutError):
        while True:
            total = (await recv_type(observer, "likes", 1.5))["data"]["total"]
    assert total + refused == 80, (total, refused)
    assert refused > 0 and total < 80, total
    if sent_in < 0.5:
        # Sent within one second or straddling two: 20 taps per second at most.
        assert 20 <= total <= 40, total
    await close_all(*sockets, observer)


async def test_msgpack_viewer_comments_and_likes_reach_both_subprotocols(
    chat_pair, api, live
) -> None:
    a, b = chat_pair
    vid, token = await new_viewer(api, "Packer")
    sender = await connect(a, live.id, token, proto="live.msgpack")
    assert sender.subprotocol == "live.msgpack"
    assert (await recv(sender))["type"] == "hello"
    watchers = {
        "json on A": await connect(a, live.id, proto="live.json"),
        "msgpack on B": await connect(b, live.id, proto="live.msgpack"),
        "json on B": await connect(b, live.id, proto="live.json"),
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


async def test_deleting_an_unknown_comment_is_404_and_twice_is_idempotent(
    chat_pair, api, live
) -> None:
    a, b = chat_pair
    other = await new_stream(api, "Other show")
    _, token = await new_viewer(api)
    viewer = await join(a, live.id, token)
    watcher = await join(b, live.id)
    await say(viewer, "delete me")
    cid = (await recv_comment(viewer, "delete me"))["data"]["id"]
    # Never posted anywhere, or posted in another stream: 404 in the API's error shape.
    for sid, comment_id, auth in [
        (live.id, "c_0000000000000000", live.auth),
        (other.id, cid, other.auth),
    ]:
        r = await api.delete(f"/api/streams/{sid}/comments/{comment_id}", headers=auth)
        assert r.status_code == 404, r.text
        assert r.json() == {"error": "unknown_comment", "detail": r.json()["detail"]}
        assert comment_id in r.json()["detail"]
    r = await api.delete(f"/api/streams/{live.id}/comments/{cid}", headers=live.auth)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first == {"id": cid, "deleted": True, "seq": first["seq"]}
    # Again (through the other process): the same answer, and nothing broadcast twice.
    async with httpx.AsyncClient(base_url=b.url, timeout=10) as api_b:
        r = await api_b.delete(f"/api/streams/{live.id}/comments/{cid}", headers=live.auth)
    assert r.status_code == 200, r.text
    assert r.json() == first
    marker = await host_says(api, live, "marker")
    got = await collect_until(watcher, marker)
    deleted = [m for m in got if m["type"] == "comment.deleted"]
    assert [(m["seq"], m["data"]) for m in deleted] == [(first["seq"], {"id": cid})]
    await close_all(viewer, watcher)
