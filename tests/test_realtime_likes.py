"""Likes and the viewer count across two real `live serve` processes sharing one Redis:
taps aggregated into few `likes` messages, limited per viewer (not per socket), and one
viewer count over both processes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import pytest
import websockets
from helpers.api import new_viewer
from helpers.chat import error_code, tap
from helpers.ws import close_all, join, recv_type

# The chat modules share one pair of processes (tests/conftest.py: chat_pair).
pytestmark = pytest.mark.xdist_group("chat")


async def test_likes_from_both_processes_are_aggregated(chat_pair, chat_api, chat_stream) -> None:
    a, b = chat_pair
    tappers = []
    for svc in (a, a, b, b):
        _, token = await new_viewer(chat_api)
        tappers.append(await join(svc, chat_stream.id, token))
    observers = [await join(a, chat_stream.id), await join(b, chat_stream.id)]
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


async def test_like_flood_is_rate_limited_and_neighbour_still_counts(
    chat_pair, chat_api, chat_stream
) -> None:
    a, b = chat_pair
    _, flood_token = await new_viewer(chat_api, "Flood")
    _, calm_token = await new_viewer(chat_api, "Calm")
    flood = await join(a, chat_stream.id, flood_token)
    calm = await join(b, chat_stream.id, calm_token)
    observer = await join(b, chat_stream.id)
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


async def test_likes_are_limited_per_viewer_not_per_socket(
    chat_pair, chat_api, chat_stream
) -> None:
    a, b = chat_pair
    _, token = await new_viewer(chat_api, "Many")
    sockets = [await join(a, chat_stream.id, token) for _ in range(4)]
    observer = await join(b, chat_stream.id)
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


async def test_viewer_count_spans_both_processes(chat_pair, chat_api, chat_stream) -> None:
    a, b = chat_pair
    on_a = [await join(a, chat_stream.id) for _ in range(2)]
    on_b = [await join(b, chat_stream.id) for _ in range(3)]

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
