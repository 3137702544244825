"""Per-viewer limits of the websocket hub against real `live serve` processes sharing one
Redis: the cap on a viewer's sockets to a stream (leases that outlive no process), the
bounded record of deletable comments, and the likes / viewers intervals."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import websockets
from helpers.api import HostedStream, new_stream, new_viewer
from helpers.services import ServiceProcess, free_port, module_service_pair, service_env
from helpers.ws import close_all, join, recv, recv_type
from redis.asyncio import Redis

from live.config import ConfigError, Settings
from realtime import keys as rt_keys
from realtime.settings import HubSettings

CAP = 3
LEASE_S = 1.5
LIMITS_ENV = {
    "LIVE_WS_MAX_CONNECTIONS_PER_VIEWER": str(CAP),
    "LIVE_WS_CONNECTION_LEASE_S": str(LEASE_S),
    "LIVE_HISTORY_SIZE": "3",
}


limits_pair = module_service_pair(LIMITS_ENV, "limits")


@pytest.fixture
async def api(
    limits_pair: tuple[ServiceProcess, ServiceProcess],
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=limits_pair[0].url, timeout=10) as c:
        yield c


@pytest.fixture
async def live(api: httpx.AsyncClient) -> HostedStream:
    return await new_stream(api)


async def refused(svc: ServiceProcess, sid: str, token: str) -> websockets.InvalidStatus | None:
    """The handshake's refusal, or None (and the socket closed) when it was admitted."""
    try:
        ws = await join(svc, sid, token)
    except websockets.InvalidStatus as exc:
        return exc
    await ws.close()
    return None


async def admitted_within(
    svc: ServiceProcess, sid: str, token: str, wait: float
) -> websockets.ClientConnection:
    """A socket as soon as the hub admits one (leases are released asynchronously)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return await join(svc, sid, token)
        except websockets.InvalidStatus as exc:
            assert exc.response.status_code == 429, exc
            assert time.monotonic() < deadline, "still refused"
            await asyncio.sleep(0.1)


# --- the cap on a viewer's sockets -------------------------------------------------


async def test_viewer_socket_cap_spans_processes_and_frees_on_close(
    limits_pair, api, live
) -> None:
    a, b = limits_pair
    _, token = await new_viewer(api, "Greedy")
    held = [await join(a, live.id, token), await join(b, live.id, token),
            await join(a, live.id, token)]
    for svc in (a, b):
        exc = await refused(svc, live.id, token)
        assert exc is not None and exc.response.status_code == 429
        assert b"too many connections" in exc.response.body
    # Another viewer, a host and anonymous watchers are not held to this viewer's cap.
    _, other_token = await new_viewer(api, "Other")
    others = [await join(b, live.id, other_token)]
    others += [await join(a, live.id, live.host_token) for _ in range(CAP + 1)]
    others += [await join(b, live.id) for _ in range(CAP + 1)]
    # The capped viewer's sockets still work: their likes count.
    await held[0].send(orjson.dumps({"type": "like"}).decode())
    assert (await recv_type(held[1], "likes"))["data"]["total"] == 1
    # Closing one (on B) frees its place for a socket on A.
    await held[1].close()
    held[1] = await admitted_within(a, live.id, token, 5)
    exc = await refused(b, live.id, token)
    assert exc is not None and exc.response.status_code == 429
    await close_all(*held, *others)


async def test_open_sockets_keep_their_place_past_the_lease(
    limits_pair, api, live, redis: Redis
) -> None:
    a, b = limits_pair
    vid, token = await new_viewer(api)
    held = [await join(a, live.id, token), await join(b, live.id, token),
            await join(b, live.id, token)]
    # Past the end of every first lease (by the Redis clock that times them): each
    # process has renewed its sockets' leases in the meantime.
    key = rt_keys.viewer_connections(live.id, vid)
    first_ends = dict(await redis.zrange(key, 0, -1, withscores=True))
    assert len(first_ends) == CAP
    deadline = time.monotonic() + LEASE_S * 5
    while (await redis.time())[0] * 1000 <= max(first_ends.values()) + 100:
        assert time.monotonic() < deadline, "the Redis clock stands still?"
        await asyncio.sleep(0.05)
    renewed = dict(await redis.zrange(key, 0, -1, withscores=True))
    assert all(renewed[m] > end for m, end in first_ends.items()), (first_ends, renewed)
    exc = await refused(a, live.id, token)
    assert exc is not None and exc.response.status_code == 429
    await close_all(*held)


@pytest.mark.slow
async def test_a_killed_process_leaks_no_places(
    limits_pair, api, live, start_service, redis_url, sqlite_url
) -> None:
    a, _ = limits_pair
    doomed = start_service(service_env(redis_url, sqlite_url, **LIMITS_ENV))
    _, token = await new_viewer(api)
    held = [await join(doomed, live.id, token) for _ in range(CAP)]
    doomed.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    # Until its leases lapse the dead process's sockets still count...
    exc = await refused(a, live.id, token)
    if exc is None:
        assert time.monotonic() - killed_at >= LEASE_S * 0.9, "admitted over the cap"
    else:
        assert exc.response.status_code == 429
    # ...and then they do not: the viewer gets its places back without anyone's help.
    fresh = [await admitted_within(a, live.id, token, LEASE_S + 10) for _ in range(CAP)]
    for ws in held:
        with contextlib.suppress(Exception):
            await ws.close()
    await close_all(*fresh)


@pytest.mark.slow
async def test_a_stopped_process_releases_its_places_at_once(
    limits_pair, api, live, start_service, redis_url, sqlite_url
) -> None:
    a, _ = limits_pair
    # A long lease: getting the places back soon proves they were released, not lapsed.
    env = service_env(redis_url, sqlite_url, **{**LIMITS_ENV, "LIVE_WS_CONNECTION_LEASE_S": "300"})
    leaving = start_service(env)
    _, token = await new_viewer(api)
    held = [await join(leaving, live.id, token) for _ in range(CAP)]
    assert leaving.stop(signal.SIGTERM) == 0
    for ws in held:
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await recv(ws)
    fresh = [await admitted_within(a, live.id, token, 10) for _ in range(CAP)]
    await close_all(*fresh)


# --- the bounded record of deletable comments --------------------------------------


async def test_only_the_newest_comments_can_be_deleted(limits_pair, api, live) -> None:
    a, _ = limits_pair
    _, token = await new_viewer(api)
    viewer = await join(a, live.id, token)
    ids: list[str] = []
    for i in range(4):
        await viewer.send(orjson.dumps({"type": "comment", "text": f"c{i}"}).decode())
        ids.append((await recv_type(viewer, "comment"))["data"]["id"])
    # LIVE_HISTORY_SIZE=3: the record keeps as many comments as the history.
    r = await api.delete(f"/api/streams/{live.id}/comments/{ids[0]}", headers=live.auth)
    assert r.status_code == 404 and r.json()["error"] == "unknown_comment", r.text
    for cid in ids[1:]:
        r = await api.delete(f"/api/streams/{live.id}/comments/{cid}", headers=live.auth)
        assert r.status_code == 200, r.text
        assert (await recv_type(viewer, "comment.deleted"))["data"] == {"id": cid}
    await viewer.close()


async def test_comment_record_stays_bounded(limits_pair, api, live, redis: Redis) -> None:
    a, _ = limits_pair
    viewers = []
    for _ in range(3):
        _, token = await new_viewer(api)
        viewers.append(await join(a, live.id, token))
    for i in range(9):
        await viewers[i % 3].send(orjson.dumps({"type": "comment", "text": f"m{i}"}).decode())
        msg = await recv_type(viewers[0], "comment")
        assert msg["data"]["text"] == f"m{i}"
        if i % 2 == 0:
            cid = msg["data"]["id"]
            r = await api.delete(f"/api/streams/{live.id}/comments/{cid}", headers=live.auth)
            assert r.status_code == 200, r.text
    assert await redis.zcard(f"rt:{{{live.id}}}:cids") == 3
    # Deletions of comments that fell out of the record are forgotten with them.
    assert await redis.hlen(f"rt:{{{live.id}}}:cdel") == 2
    await close_all(*viewers)


# --- likes and viewers intervals -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LIVE_WS_LIKES_INTERVAL_MS", "199"),
        ("LIVE_WS_LIKES_INTERVAL_MS", "fast"),
        ("LIVE_WS_LIKES_INTERVAL_MS", "250.5"),
        ("LIVE_WS_VIEWERS_INTERVAL_MS", "999"),
        ("LIVE_WS_VIEWERS_INTERVAL_MS", "nan"),
        ("LIVE_WS_MAX_CONNECTIONS_PER_VIEWER", "-1"),
        ("LIVE_WS_CONNECTION_LEASE_S", "0.5"),
    ],
)
def test_bad_hub_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        _hub_settings({name: value})


def _hub_settings(env: dict[str, str]) -> HubSettings:
    return Settings.from_env({"LIVE_SECRET": "x", **env}).ws


def test_hub_settings_defaults_and_protocol_minimums() -> None:
    d = _hub_settings({})
    assert (d.likes_interval_ms, d.viewers_interval_ms) == (200, 1000)
    assert d.max_connections_per_viewer == 5
    s = _hub_settings({
        "LIVE_WS_LIKES_INTERVAL_MS": "200", "LIVE_WS_VIEWERS_INTERVAL_MS": "1000",
        "LIVE_WS_MAX_CONNECTIONS_PER_VIEWER": "0",
    })
    assert (s.likes_interval_ms, s.viewers_interval_ms) == (200, 1000)
    assert s.max_connections_per_viewer == 0


@pytest.mark.slow
def test_service_refuses_to_start_with_a_too_fast_interval(
    redis_url: str, sqlite_url: str
) -> None:
    env = service_env(redis_url, sqlite_url, LIVE_WS_LIKES_INTERVAL_MS="50")
    done = subprocess.run(
        [sys.executable, "-m", "live.cli", "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60,
    )
    # Refused before anything starts, with the variable named and no traceback.
    assert done.returncode == 2, done.stderr
    assert "LIVE_WS_LIKES_INTERVAL_MS" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
async def test_likes_and_viewers_intervals_come_from_the_environment(
    start_service, redis_url, sqlite_url
) -> None:
    likes_ms, viewers_ms = 800, 1500
    svc = start_service(service_env(
        redis_url, sqlite_url,
        LIVE_WS_LIKES_INTERVAL_MS=str(likes_ms), LIVE_WS_VIEWERS_INTERVAL_MS=str(viewers_ms),
        LIVE_WS_LIKES_PER_S="100",
    ))
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as client:
        live = await new_stream(client)
        _, token = await new_viewer(client)
    tapper = await join(svc, live.id, token)
    observer = await join(svc, live.id)
    got: dict[str, list[dict[str, Any]]] = {"likes": [], "viewers": []}

    async def watch() -> None:
        while True:
            msg = await recv(observer, 10)
            if msg["type"] in got:
                got[msg["type"]].append(msg)

    watching = asyncio.create_task(watch())
    # Taps every 50 ms and one more viewer every 400 ms, for 4 seconds or so: the
    # count changes between any two ticks of the viewers interval.
    joined: list[websockets.ClientConnection] = []
    for i in range(80):
        await tapper.send(orjson.dumps({"type": "like"}).decode())
        if i % 8 == 0:
            joined.append(await join(svc, live.id))
        await asyncio.sleep(0.05)
    # Until the trailing `likes` message (at most one interval later) has the last tap.
    deadline = time.monotonic() + likes_ms / 1000 * 5
    while not got["likes"] or got["likes"][-1]["data"]["total"] < 80:
        assert time.monotonic() < deadline, got["likes"][-1:]
        await asyncio.sleep(0.02)
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching
    likes, viewers = got["likes"], got["viewers"]
    assert likes and likes[-1]["data"]["total"] == 80
    for kind, msgs, interval in (("likes", likes, likes_ms), ("viewers", viewers, viewers_ms)):
        stamps = [m["ts"] for m in msgs]
        assert len(stamps) >= 2, (kind, stamps)
        # Timestamps are taken just before the gate is checked, hence some slack.
        assert all(t2 - t1 >= interval * 0.6 for t1, t2 in itertools.pairwise(stamps)), (
            kind, stamps)
        # No more than one per interval (at the default 200 ms, about four times as many).
        assert len(stamps) <= (stamps[-1] - stamps[0]) / interval + 2, (kind, stamps)
    await close_all(tapper, observer, *joined)
