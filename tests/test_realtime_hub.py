"""The websocket hub against real `live serve` processes sharing one real Redis: order,
resume, subprotocols, bad input, slow and dead viewers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgpack
import orjson
import pytest
import websockets
from helpers.api import HostedStream, host_says, new_stream, new_viewer
from helpers.services import ServiceProcess, module_service_pair, service_env
from helpers.ws import (
    collect_host_messages,
    collect_until,
    connect,
    decode,
    recv,
    recv_type,
    ws_url,
)
from redis.asyncio import Redis
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from realtime.publish import Publisher

# Short timers so heartbeats and slow consumers show within a second or two.
HUB_ENV = {
    # Fast heartbeats, with a pong timeout a client on a loaded test machine still meets
    # (at 0.6 s, viewers of a busy test process were dropped now and then).
    "LIVE_WS_PING_INTERVAL_S": "0.5",
    "LIVE_WS_PING_TIMEOUT_S": "1.5",
    "LIVE_WS_STALL_TIMEOUT_S": "1.0",
    "LIVE_WS_WRITE_HIGH_WATER": "16384",
    "LIVE_WS_COMMENTS_PER_WINDOW": "5",
    "LIVE_WS_COMMENT_WINDOW_S": "3",
    "LIVE_WS_MAX_COMMENT_CHARS": "200",
}

# Two service processes on the same Redis: one audience split over both.
hub_pair = module_service_pair(HUB_ENV, "hub")


@pytest.fixture
async def api(hub_pair: tuple[ServiceProcess, ServiceProcess]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hub_pair[0].url, timeout=10) as c:
        yield c


@pytest.fixture
async def live(api: httpx.AsyncClient) -> HostedStream:
    return await new_stream(api)


# --- helpers -----------------------------------------------------------------------


class RawViewer:
    """A websocket client on a bare socket that reads only when told to: a stalled or
    dead viewer. Frames are parsed with the `websockets` sans-I/O client."""

    def __init__(self, svc: ServiceProcess, sid: str, rcvbuf: int = 4096) -> None:
        self.svc = svc
        self.sid = sid
        self.rcvbuf = rcvbuf
        self.proto = ClientProtocol(
            parse_uri(ws_url(svc, sid)), subprotocols=["live.json"], max_size=2**24
        )
        self.frames: list[Frame] = []
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> dict[str, Any]:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.svc.port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=2**16)
        self.proto.send_request(self.proto.connect())
        self.writer.write(b"".join(self.proto.data_to_send()))
        hello = None
        while hello is None:
            assert self.proto.handshake_exc is None, self.proto.handshake_exc
            assert await self.read_some(2.0), "closed before hello"
            hello = next((decode(f.data) for f in self.frames if f.opcode is Opcode.TEXT), None)
        return hello

    async def read_some(self, wait: float) -> bool:
        """Read what is there; False at EOF."""
        assert self.reader is not None
        data = await asyncio.wait_for(self.reader.read(2**16), wait)
        if not data:
            self.proto.receive_eof()
        else:
            self.proto.receive_data(data)
        for ev in self.proto.events_received():
            if isinstance(ev, Response):
                assert ev.status_code == 101, ev
            else:
                self.frames.append(ev)
        self.proto.data_to_send()  # pongs are deliberately never sent
        return bool(data)

    async def read_to_end(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while await self.read_some(max(0.01, deadline - time.monotonic())):
            pass

    def messages(self) -> list[dict[str, Any]]:
        return [decode(f.data) for f in self.frames if f.opcode is Opcode.TEXT]

    def close_code(self) -> int | None:
        close = self.proto.close_rcvd
        return None if close is None else int(close.code)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


# --- tests -------------------------------------------------------------------------


async def test_hello_first_with_whole_state(hub_pair, api, live) -> None:
    r = await api.post(f"/api/streams/{live.id}/products", headers=live.auth, json={
        "sku": "mug", "title": "Mug", "price_cents": 1200, "stock": 7})
    assert r.status_code == 201, r.text
    seq = await host_says(api, live, "welcome")
    async with await connect(hub_pair[1], live.id) as ws:
        hello = await recv(ws)
        assert hello["type"] == "hello"
        assert hello["seq"] == seq == hello["data"]["seq"]
        data = hello["data"]
        assert data["id"] == live.id and data["status"] == "live"
        assert [p["sku"] for p in data["products"]] == ["mug"]
        assert data["products"][0]["stock_left"] == 7
        assert ws.subprotocol == "live.json"


async def test_two_processes_every_viewer_sees_one_gap_free_sequence(hub_pair, api, live) -> None:
    per_process, messages = 40, 120
    viewers = [await connect(hub_pair[i % 2], live.id) for i in range(2 * per_process)]
    try:
        hellos = [await recv(ws) for ws in viewers]
        # A `viewers` count may go out while they connect, so starts may differ a little.
        starts = [h["seq"] for h in hellos]
        clients = [httpx.AsyncClient(base_url=svc.url, timeout=10) for svc in hub_pair]
        try:
            # Published concurrently through both processes.
            sem = asyncio.Semaphore(16)

            async def say(i: int) -> int:
                async with sem:
                    return await host_says(clients[i % 2], live, f"m{i}")

            last = max(await asyncio.gather(*(say(i) for i in range(messages))))
        finally:
            for c in clients:
                await c.aclose()
        results = await asyncio.gather(*(collect_until(ws, last) for ws in viewers))
        common = max(starts)
        reference = [m for m in results[0] if m["seq"] > common]
        texts = sorted(m["data"]["text"] for m in reference if m["type"] == "host.message")
        assert texts == sorted(f"m{i}" for i in range(messages))
        for start, got in zip(starts, results, strict=True):
            # Gap-free: every broadcast seq (host messages, viewer counts...) exactly once.
            assert [m["seq"] for m in got] == list(range(start + 1, last + 1))
            # Same messages, same seq, same order, whichever process serves the viewer.
            assert [m for m in got if m["seq"] > common] == reference
    finally:
        await asyncio.gather(*(ws.close() for ws in viewers))


async def test_resume_on_the_other_process_fills_the_gap(hub_pair, api, live) -> None:
    _, token = await new_viewer(api)
    ws = await connect(hub_pair[0], live.id, token)
    await recv(ws)
    for i in range(3):
        await host_says(api, live, f"before{i}")
    seen = await collect_host_messages(ws, 3)
    last_seen = seen[-1][0]
    await ws.close()
    # Viewer-count broadcasts may take seqs in between, so expect the seqs the host got.
    missed = [(await host_says(api, live, f"missed{i}"), f"missed{i}") for i in range(5)]
    async with await connect(hub_pair[1], live.id, token) as ws2:
        hello = await recv(ws2)
        assert hello["seq"] >= missed[-1][0]
        await ws2.send(orjson.dumps({"type": "resume", "after": last_seen}).decode())
        replay = await collect_until(ws2, hello["seq"])
        assert [m["seq"] for m in replay] == list(range(last_seen + 1, hello["seq"] + 1))
        assert [
            (m["seq"], m["data"]["text"]) for m in replay if m["type"] == "host.message"
        ] == missed
        live_seq = await host_says(api, live, "after")
        assert await collect_host_messages(ws2, 1) == [(live_seq, "after")]


async def test_resume_after_history_is_gone_sends_fresh_hello(hub_pair, api, live, redis) -> None:
    ws = await connect(hub_pair[0], live.id)
    await recv(ws)
    for i in range(6):
        await host_says(api, live, f"m{i}")
    await collect_host_messages(ws, 6)
    # The history keeps only the newest entries; the old ones are trimmed away.
    await redis.xtrim(f"rt:{{{live.id}}}:hist", maxlen=2, approximate=False)
    await ws.send(orjson.dumps({"type": "resume", "after": 1}).decode())
    hello = await recv_type(ws, "hello")
    assert hello["data"]["recovered"] is False
    # At least the six host messages; a viewer-count broadcast may have taken a seq too.
    assert hello["seq"] >= 6
    seq = await host_says(api, live, "next")
    assert await collect_host_messages(ws, 1) == [(seq, "next")]
    await ws.close()


async def test_msgpack_subprotocol_gets_binary_frames(hub_pair, api, live) -> None:
    _, token = await new_viewer(api, "Mia")
    async with await connect(hub_pair[1], live.id, token, proto="live.msgpack") as ws:
        assert ws.subprotocol == "live.msgpack"
        raw = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(raw, bytes)
        assert msgpack.unpackb(raw)["type"] == "hello"
        seq = await host_says(api, live, "binary hi")
        msg = await recv_type(ws, "host.message")
        assert msg == {"type": "host.message", "seq": seq, "ts": msg["ts"],
                       "data": {"text": "binary hi", "host_name": "Ann"}}
        await ws.send(msgpack.packb({"type": "comment", "text": "packed"}))
        comment = await recv_type(ws, "comment")
        assert comment["data"]["text"] == "packed" and comment["data"]["user"]["name"] == "Mia"
        await ws.send(msgpack.packb({"type": "ping"}))
        assert (await recv_type(ws, "pong"))["seq"] is None
        await ws.send(b"\xc1\xc1 not msgpack")
        err = await recv_type(ws, "error")
        assert err["data"]["code"] == "invalid_message"


async def test_bad_input_gets_errors_and_neighbours_are_unaffected(hub_pair, api, live) -> None:
    _, token = await new_viewer(api)
    bad = await connect(hub_pair[0], live.id, token)
    good = await connect(hub_pair[0], live.id)
    await recv(bad)
    await recv(good)
    cases = [
        ("{not json", "invalid_message"),
        ("[1, 2]", "invalid_message"),
        ('{"text": "no type"}', "invalid_message"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": "comment"}', "invalid_message"),
        ('{"type": "comment", "text": 5}', "invalid_message"),
        ('{"type": "resume", "after": "x"}', "invalid_message"),
        ('{"type": "resume", "after": -1}', "invalid_message"),
        ('{"type": "comment", "text": "' + "x" * 201 + '"}', "comment_too_long"),
    ]
    for raw, code in cases:
        await bad.send(raw)
        err = await recv_type(bad, "error")
        assert err["data"]["code"] == code, (raw, err)
        assert err["seq"] is None
    # A flood of garbage does not hold up the neighbour's broadcast.
    for _ in range(500):
        await bad.send("}}}")
    seq = await host_says(api, live, "still here")
    t0 = time.monotonic()
    assert await collect_host_messages(good, 1, wait=3) == [(seq, "still here")]
    assert time.monotonic() - t0 < 2
    # Over 64 KiB: closed with 1009, and only that one.
    await bad.send("x" * (64 * 1024 + 1))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await recv(bad)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    seq = await host_says(api, live, "after the big one")
    assert await collect_host_messages(good, 1) == [(seq, "after the big one")]
    await good.close()


async def test_handshake_rejects_bad_path_stream_and_token(hub_pair, api, live) -> None:
    svc = hub_pair[0]
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect(f"{svc.ws_url}/ws/nope/{live.id}")
    assert e.value.response.status_code == 404
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect(ws_url(svc, "s_doesnotexist"))
    assert e.value.response.status_code == 404
    with pytest.raises(websockets.InvalidStatus) as e:
        await websockets.connect(ws_url(svc, live.id, "forged.token"))
    assert e.value.response.status_code == 401
    # Without a subprotocol the connection speaks live.json.
    async with websockets.connect(ws_url(svc, live.id)) as ws:
        assert ws.subprotocol is None
        assert (await recv(ws))["type"] == "hello"


async def test_stream_ended_reaches_viewers_then_closes_1000(hub_pair, api, live) -> None:
    viewers = [await connect(hub_pair[i % 2], live.id) for i in range(4)]
    for ws in viewers:
        await recv(ws)
    r = await api.post(f"/api/streams/{live.id}/end", headers=live.auth)
    assert r.status_code == 200, r.text
    for ws in viewers:
        assert (await recv_type(ws, "stream.ended"))["data"]["ended_at"] > 0
        with pytest.raises(websockets.ConnectionClosedOK) as closed:
            await recv(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    # Joining an ended stream: hello (status ended), then closed.
    async with await connect(hub_pair[1], live.id) as late:
        assert (await recv(late))["data"]["status"] == "ended"
        with pytest.raises(websockets.ConnectionClosedOK):
            await recv(late)


@pytest.mark.slow
async def test_stalled_viewer_is_closed_1008_keeps_newest_stock_and_slows_no_one(
    start_service, redis_url, sqlite_url, api, live, redis: Redis
) -> None:
    # Slow heartbeats here: this viewer is meant to be caught by the stall check. The
    # stall timeout outlasts the publishing below (on a busy machine over a second), so
    # the close comes after the final stock and must carry it.
    env = service_env(redis_url, sqlite_url, **{
        **HUB_ENV, "LIVE_WS_PING_INTERVAL_S": "30", "LIVE_WS_PING_TIMEOUT_S": "30",
        "LIVE_WS_STALL_TIMEOUT_S": "3"})
    svc = start_service(env)
    publisher = Publisher(redis)
    fast = await connect(svc, live.id)
    await recv(fast)
    stalled = RawViewer(svc, live.id)
    await stalled.open()
    # 600 x 20 KB outgrows what loopback's kernel buffers absorb (tcp_wmem max 4 MiB),
    # so the server's transport really backs up and pauses.
    big = "y" * 20_000
    n_messages = 600
    t0 = time.monotonic()
    last_seq = 0
    for i in range(n_messages):
        last_seq = await publisher.publish(live.id, "host.message", {"text": f"{i} {big}"})
        if i % 40 == 39:
            await publisher.publish(live.id, "stock", {"sku": "mug", "left": 100 - i})
    final_stock_seq = await publisher.publish(live.id, "stock", {"sku": "mug", "left": 3})
    # The fast viewer got everything, gap-free, without waiting on the stalled one.
    got: list[dict[str, Any]] = []
    while not got or got[-1]["seq"] < final_stock_seq:
        got.append(await recv(fast, 5))
    elapsed = time.monotonic() - t0
    broadcast = [m for m in got if m["seq"] is not None and m["type"] != "hello"]
    seqs = [m["seq"] for m in broadcast]
    assert seqs == list(range(seqs[0], final_stock_seq + 1))
    assert elapsed < 5, elapsed
    # Past the stall timeout the stalled viewer is closed; it finds the newest stock
    # before the close frame, and it lost host messages on the way.
    # Reading now would un-stall it: wait for the server's word that it gave up first.
    deadline = time.monotonic() + 15
    while "too slow; closing with 1008" not in svc.log():
        assert time.monotonic() < deadline, "the stalled viewer was never closed"
        await asyncio.sleep(0.1)
    await stalled.read_to_end(10)
    assert stalled.close_code() == 1008
    msgs = stalled.messages()
    stock = [m for m in msgs if m["type"] == "stock"]
    assert stock and stock[-1]["data"] == {"sku": "mug", "left": 3}
    assert len([m for m in msgs if m["type"] == "host.message"]) < n_messages
    assert last_seq < final_stock_seq
    stalled.close()
    await fast.close()


async def test_heartbeat_drops_a_viewer_that_never_answers_pings(hub_pair, api, live) -> None:
    dead = RawViewer(hub_pair[1], live.id)
    await dead.open()
    t0 = time.monotonic()
    await dead.read_to_end(8)  # reads (and sees pings) but never sends a pong
    assert any(f.opcode is Opcode.PING for f in dead.frames)
    assert time.monotonic() - t0 < 5  # interval + timeout + a tick, with room for load
    # A normal client answers pings and stays.
    async with await connect(hub_pair[1], live.id) as ws:
        await recv(ws)
        await asyncio.sleep(2.5)  # past the first ping's timeout
        seq = await host_says(api, live, "alive")
        assert await collect_host_messages(ws, 1) == [(seq, "alive")]
    dead.close()
