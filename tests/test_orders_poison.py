"""The drainer never stops silently: an event SQL refuses for good is isolated and set
aside (dead letters) while the rest drains, and an unexpected error restarts the loop
with back-off, logged once per kind. Real Redis, real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from helpers.api import new_stream
from helpers.orders import (
    add_stream,
    emit_status,
    new_rid,
    new_sid,
    reservation,
    settings_for,
    sql_orders,
    waiting,
)
from helpers.services import ServiceProcess, service_env
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from inventory import keys as inv_keys
from orders import deadletter
from orders.drain import Drainer
from orders.reconcile import reconcile

# Fits Redis, JSON and a Python int; beyond a signed 64-bit integer, so SQLite cannot
# bind it and PostgreSQL's integer column refuses it.
TOO_BIG = 2**63 + 5


async def poison(redis: Redis, sid: str) -> str:
    rid = new_rid(sid)
    data = reservation(sid, rid, "paid", qty=1)
    data["qty"] = TOO_BIG
    await redis.xadd(
        inv_keys.events(sid), {"type": "reservation.confirmed", "data": json.dumps(data)}
    )
    return rid


async def test_a_poison_event_is_isolated_and_the_rest_drains(
    redis: Redis, orders_engine: AsyncEngine
) -> None:
    sid = new_sid()
    await add_stream(redis, sid)
    # Out of the shared registry: an unsharded drainer of another test on this Redis would
    # dead-letter the poison event a second time (this drainer lists its stream itself).
    await redis.srem(inv_keys.STREAMS, sid)
    good = []
    for i in range(40):
        rid = new_rid(sid)
        await emit_status(redis, sid, rid, "paid" if i % 2 else "reserved")
        good.append(rid)
        if i == 17:
            bad = await poison(redis, sid)
    before = await deadletter.totals(redis)
    settings = settings_for([sid], batch_size=500, retry_max_ms=100)
    drainer = Drainer(redis, orders_engine, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(drainer.run(stop))
    try:
        deadline = time.monotonic() + 60
        while await waiting(redis, settings.group, [sid]):
            assert time.monotonic() < deadline, "the drainer did not get past the poison"
            assert not task.done()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await redis.sadd(inv_keys.STREAMS, sid)  # back, for reconcile below
    assert set(await sql_orders(orders_engine, sid)) == set(good)
    dead = await deadletter.listed(redis, sid, group=settings.group)
    assert [d["type"] for d in dead] == ["reservation.confirmed"]
    # Another consumer group drains into another store: these are not its own.
    assert await deadletter.listed(redis, sid, group="another") == []
    assert bad in dead[0]["data"] and "SQL refused it" in dead[0]["why"]
    assert drainer.stats.dead_lettered == 1
    after = await deadletter.totals(redis)
    # At least ours: a drainer of another group that listed the stream before it left
    # the registry may have set the same event aside for its own store.
    assert after["events"] >= before["events"] + 1
    assert after["streams"] >= 1

    report = await reconcile(redis, orders_engine, sid, wait_s=5, group=settings.group)
    assert len(report.dead_letters) == 1 and not report.agree
    assert "DEAD LETTERS: 1" in report.render()
    assert await deadletter.remove(redis, sid, [d["id"] for d in dead]) == 1
    assert await deadletter.listed(redis, sid, group=settings.group) == []
    # The stream is listed again (for reconcile), so another group's drainer on this
    # Redis may have set the event aside too: the count follows what the stream holds.
    held = len(await deadletter.listed(redis, sid))
    assert int(await redis.hget(deadletter.STREAMS, sid) or 0) == held


async def test_an_unexpected_error_restarts_the_loop_logged_once(
    redis: Redis, orders_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    sid, broken = new_sid(), new_sid()
    await add_stream(redis, sid)
    # Not a Redis Stream: creating the consumer group on it fails (WRONGTYPE), and so
    # does every turn of the loop until it is fixed.
    await redis.set(inv_keys.events(broken), "not a stream")
    rids = [new_rid(sid) for _ in range(10)]
    for rid in rids:
        await emit_status(redis, sid, rid, "paid")
    settings = settings_for([sid, broken], retry_max_ms=100)
    drainer = Drainer(redis, orders_engine, settings)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="orders.drain")
    task = asyncio.create_task(drainer.run(stop))
    try:
        deadline = time.monotonic() + 30
        while drainer.stats.restarts < 5:
            assert time.monotonic() < deadline, "the loop did not restart"
            assert not task.done(), "the drainer stopped"
            await asyncio.sleep(0.05)
        await redis.delete(inv_keys.events(broken))  # fixed: it goes on by itself
        while await waiting(redis, settings.group, [sid]):
            assert time.monotonic() < deadline, "no drain after the fix"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert set(await sql_orders(orders_engine, sid)) == set(rids)
    failures = [r for r in caplog.records if "restarting the drainer loop" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert failures[0].exc_info is not None  # the traceback, once
    assert any("works again" in r.getMessage() for r in caplog.records)


def run_reconcile(env: dict[str, str], sid: str, cwd: Path, *flags: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "live.cli", "reconcile", sid, "--wait", "10", *flags],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
async def test_dead_letters_show_in_healthz_and_reconcile(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    # A consumer group of its own (reconcile below uses the same env): another service
    # on this Redis would dead-letter the poison event a second time.
    env = service_env(redis_url, f"sqlite+aiosqlite:///{tmp_path / 'live.db'}",
                      LIVE_DRAIN_GROUP=f"orders_t{secrets.token_hex(4)}")
    svc = ServiceProcess(env=dict(env)).start(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=svc.url, timeout=30) as c:
            before = (await c.get("/healthz")).json()["drain"]["dead_letters"]
            stream = await new_stream(c)
            await poison(redis, stream.id)
            r = await c.post(
                f"/api/streams/{stream.id}/messages", headers=stream.auth,
                json={"text": "still here"},
            )
            assert r.status_code == 202
            deadline = time.monotonic() + 30
            while True:
                health = (await c.get("/healthz")).json()
                if health["drain"]["dead_letters"]["events"] > before["events"]:
                    break
                assert time.monotonic() < deadline, health
                await asyncio.sleep(0.1)
            assert health["status"] == "ok"
            assert health["drain"]["dead_letters"]["streams"] >= 1
        code, out = await asyncio.to_thread(run_reconcile, env, stream.id, tmp_path)
        assert code == 1 and "DEAD LETTERS: 1" in out and "SQL refused it" in out, out
        # --repair replays it: SQL still refuses, so it stays (and reconcile says 1).
        code, out = await asyncio.to_thread(run_reconcile, env, stream.id, tmp_path, "--repair")
        assert code == 1 and "SQL still refuses it" in out, out
        code, out = await asyncio.to_thread(
            run_reconcile, env, stream.id, tmp_path, "--drop-dead-letters"
        )
        assert code == 0 and "dropped 1 dead letter(s)" in out, out
        code, out = await asyncio.to_thread(run_reconcile, env, stream.id, tmp_path)
        assert code == 0, out
    finally:
        svc.stop()
