"""The embedded default keeps its state in LIVE_DATA_DIR: `live serve` killed (SIGKILL)
or stopped (SIGTERM) and started again in the same directory finds every stream, product,
sale, open reservation, history entry, token and order; `live reconcile` finds the
embedded server by itself, running or not; a second `live serve` on the directory refuses.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
import websockets
from conftest import ROOT, ServiceProcess, free_port
from test_embedded_redis import embedded_servers, wait_gone


def embedded_env(**extra: str) -> dict[str, str]:
    """Nothing but defaults: no Redis URL, no database URL, no secret (generated into
    the data directory), as `make serve` runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    env.update(PYTHONPATH=str(ROOT), LIVE_LOG_LEVEL="info", **extra)
    return env


def live_cmd(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "live.cli", *args],
        cwd=cwd, env=embedded_env(), capture_output=True, text=True, timeout=timeout,
    )


async def ws_messages_after(svc: ServiceProcess, sid: str, token: str, after: int) -> list:
    """Resume from `after` and return what the history re-sends up to the hello's seq."""
    url = f"{svc.ws_url}/ws/streams/{sid}?token={token}"
    async with websockets.connect(url, subprotocols=["live.json"], open_timeout=10) as ws:
        hello = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello"
        await ws.send(orjson.dumps({"type": "resume", "after": after}).decode())
        got: list[dict] = []
        while not got or got[-1]["seq"] is None or got[-1]["seq"] < hello["seq"]:
            msg = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg.get("seq") is not None:
                got.append(msg)
        return got


async def sell_some(api: httpx.AsyncClient) -> dict:
    """A stream with a product, a running sale, a host message, two paid orders and one
    open reservation; returns what the test checks after the restart."""
    r = await api.post("/api/streams", json={"title": "Keep me", "host_name": "Ann"})
    assert r.status_code == 201, r.text
    sid, host = r.json()["id"], {"Authorization": f"Bearer {r.json()['host_token']}"}
    for sku in ("tee", "cap"):
        r = await api.post(f"/api/streams/{sid}/products", headers=host, json={
            "sku": sku, "title": sku, "price_cents": 1500, "stock": 20})
        assert r.status_code == 201, r.text
    r = await api.post(f"/api/streams/{sid}/sales", headers=host, json={
        "sku": "cap", "price_cents": 900, "stock": 5, "duration_s": 3600})
    assert r.status_code == 201, r.text
    sale_id = r.json()["id"]
    r = await api.post(f"/api/streams/{sid}/messages", headers=host, json={"text": "hi all"})
    assert r.status_code == 202, r.text
    r = await api.post("/api/viewers", json={"name": "Bo"})
    viewer = {"Authorization": f"Bearer {r.json()['token']}"}
    rids = []
    for i, sku in enumerate(["tee", "tee", "cap"]):
        body = {"sku": sku, "qty": 1, "key": f"k{i}"}
        r = await api.post(f"/api/streams/{sid}/reservations", headers=viewer, json=body)
        assert r.status_code == 201, r.text
        rids.append(r.json()["id"])
    paid = {}
    for rid in rids[:2]:
        r = await api.post(f"/api/reservations/{rid}/confirm", headers=viewer)
        assert r.status_code == 200, r.text
        paid[rid] = r.json()["order_id"]
    state = (await api.get(f"/api/streams/{sid}")).json()
    return {
        "sid": sid, "host": host, "viewer": viewer, "viewer_token": viewer["Authorization"][7:],
        "sale_id": sale_id, "open_rid": rids[2], "paid": paid, "state": state,
    }


async def check_all_there(api: httpx.AsyncClient, svc: ServiceProcess, before: dict) -> None:
    sid = before["sid"]
    state = (await api.get(f"/api/streams/{sid}")).json()
    assert state["status"] == "live"
    assert state["seq"] >= before["state"]["seq"]
    assert {p["sku"]: p["stock_left"] for p in state["products"]} == {
        p["sku"]: p["stock_left"] for p in before["state"]["products"]}
    assert [s["id"] for s in state["sales"]] == [before["sale_id"]]
    # The viewer token (signed with the secret generated into the data dir) still works,
    # and the open reservation is still held.
    r = await api.get(f"/api/reservations/{before['open_rid']}", headers=before["viewer"])
    assert r.status_code == 200 and r.json()["status"] == "reserved", r.text
    # The paid orders, from SQL in the data dir, with the host token.
    r = await api.get(f"/api/streams/{sid}/orders?status=paid", headers=before["host"])
    assert r.status_code == 200, r.text
    assert {o["id"]: o["order_id"] for o in r.json()["orders"]} == before["paid"]
    stats = (await api.get(f"/api/streams/{sid}/stats", headers=before["host"])).json()
    assert stats["paid"] == 2
    # Resume history: the host message is still re-sent.
    history = await ws_messages_after(svc, sid, before["viewer_token"], 0)
    assert any(m["type"] == "host.message" and m["data"]["text"] == "hi all" for m in history)
    # Confirming the open reservation works after the restart.
    r = await api.post(f"/api/reservations/{before['open_rid']}/confirm", headers=before["viewer"])
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.slow
async def test_embedded_state_survives_a_restart(tmp_path: Path, sig: int) -> None:
    port = free_port()
    svc = ServiceProcess(env=embedded_env(), port=port).start(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=svc.url, timeout=10) as api:
            before = await sell_some(api)
        assert (tmp_path / "live-data" / "live.secret").exists()
        assert (tmp_path / "live-data" / "live.db").exists()
        # reconcile finds the running embedded server (no LIVE_REDIS_URL) and agrees.
        rec = live_cmd(tmp_path, "reconcile", before["sid"])
        assert rec.returncode == 0, rec.stdout + rec.stderr
        assert "started the embedded server" not in rec.stderr
        # A second `live serve` on the same data dir refuses clearly.
        second = live_cmd(tmp_path, "serve", "--port", str(free_port()), timeout=30)
        assert second.returncode == 2, second.stderr
        assert "in use" in second.stderr and "live-data" in second.stderr
        servers = embedded_servers(svc.proc.pid)
        assert len(servers) == 1
        svc.stop(sig)
        assert wait_gone(servers), "the embedded server outlived `live serve`"
    finally:
        svc.stop()
    # Stopped: reconcile starts the server on the persisted state for its own run.
    rec = live_cmd(tmp_path, "reconcile", before["sid"])
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "started the embedded server" in rec.stderr
    assert not (tmp_path / "live-data" / "redis.json").exists(), "a stale address left"

    again = ServiceProcess(env=embedded_env(), port=port).start(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=again.url, timeout=10) as api:
            await check_all_there(api, again, before)
        rec = live_cmd(tmp_path, "reconcile", before["sid"])
        assert rec.returncode == 0, rec.stdout + rec.stderr
    finally:
        assert again.stop() == 0


def test_reconcile_holds_the_data_dir_while_it_runs_its_own_server(tmp_path: Path) -> None:
    """While a command runs the embedded server on a stopped directory, `live serve`
    refuses instead of opening the same files (the lock names the holder)."""
    with open(tmp_path / "drain.log", "wb") as log:
        drain = subprocess.Popen(
            [sys.executable, "-m", "live.cli", "drain"],
            cwd=tmp_path, env=embedded_env(), stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        info_path = tmp_path / "live-data" / "redis.json"
        deadline = time.monotonic() + 30
        while not info_path.exists():  # the server is up once its address is written
            assert drain.poll() is None, (tmp_path / "drain.log").read_text()
            assert time.monotonic() < deadline, "live drain started no server"
            time.sleep(0.05)
        serve = live_cmd(tmp_path, "serve", "--port", str(free_port()), timeout=30)
        assert serve.returncode == 2
        assert "live drain" in serve.stderr
    finally:
        drain.send_signal(signal.SIGTERM)
        assert drain.wait(30) == 0
    assert not (tmp_path / "live-data" / "redis.json").exists()


def test_a_bad_data_dir_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    r = subprocess.run(
        [sys.executable, "-m", "live.cli", "serve"], cwd=tmp_path,
        env=embedded_env(LIVE_DATA_DIR=str(tmp_path / "afile")), capture_output=True,
        text=True, timeout=30,
    )
    assert r.returncode == 2 and "LIVE_DATA_DIR" in r.stderr
