"""`GET /metrics`: Prometheus text over every worker of `live serve`, by route template."""

from __future__ import annotations

import asyncio
import glob
import os
import secrets
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest
import websockets
from conftest import ServiceProcess, new_stream, new_viewer, service_env
from prometheus_client.parser import text_string_to_metric_families

# The drainers of these services read their own consumer group: a service of another
# test on this worker's Redis drains with the default one, and would take their events.
OWN_GROUP = f"orders_t{secrets.token_hex(4)}"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def test_the_dashboard_uses_only_metrics_we_define() -> None:
    import json
    import re

    from conftest import ROOT
    from prometheus_client import REGISTRY

    import telemetry.metrics  # noqa: F401  (registers every metric)

    suffixes = {"counter": ("_total",), "gauge": ("",),
                "histogram": ("_bucket", "_sum", "_count")}
    known = {m.name + end for m in REGISTRY.collect() for end in suffixes.get(m.type, ())}
    dashboard = json.loads((ROOT / "docs/grafana-dashboard.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"livecart_\w+", target["expr"])
    }
    assert used and used <= known, used - known


def scrape(svc: ServiceProcess) -> Samples:
    # A new connection each time, so successive scrapes may land on different workers.
    r = httpx.get(svc.url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


async def until(check: Callable[[Samples], bool], svc: ServiceProcess,
                timeout_s: float = 20.0) -> Samples:
    deadline = time.monotonic() + timeout_s
    while True:
        samples = await asyncio.to_thread(scrape, svc)
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never matched; last scrape: {samples}")
        await asyncio.sleep(0.2)


async def connect(svc: ServiceProcess, sid: str, token: str) -> websockets.ClientConnection:
    ws = await websockets.connect(
        f"{svc.ws_url}/ws/streams/{sid}?token={token}", open_timeout=10, max_queue=None
    )
    assert '"hello"' in str(await asyncio.wait_for(ws.recv(), 10))
    return ws


def private_dirs(pid: int) -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), f"livecart-metrics-{pid}-*"))


@pytest.mark.slow
async def test_one_view_over_all_workers(
    start_service, redis_url: str, tmp_path: Path
) -> None:
    env = service_env(redis_url, f"sqlite+aiosqlite:///{tmp_path}/m.db")
    svc: ServiceProcess = start_service(env, "--workers", "2")
    assert svc.proc is not None
    assert len(private_dirs(svc.proc.pid)) == 1  # created by live serve for its workers

    before = await asyncio.to_thread(scrape, svc)
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as api:
        stream = await new_stream(api, "metrics")
        r = await api.post(
            f"/api/streams/{stream.id}/products", headers=stream.auth,
            json={"sku": "cap", "title": "Cap", "price_cents": 900, "stock": 3,
                  "per_user_limit": 2},
        )
        assert r.status_code == 201, r.text
        viewers = [await new_viewer(api, f"v{i}") for i in range(3)]
    # No keep-alive: each request on a fresh connection, so that both workers take some.
    fresh = httpx.AsyncClient(
        base_url=svc.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
    )
    outcomes = []
    for i, (_, token) in enumerate(viewers):
        auth = {"Authorization": f"Bearer {token}"}
        for n in range(2):
            r = await fresh.post(
                f"/api/streams/{stream.id}/reservations", headers=auth,
                json={"sku": "cap", "qty": 1, "key": f"k{i}-{n}"},
            )
            outcomes.append(r.status_code)
            if r.status_code == 201:
                c = await fresh.post(f"/api/reservations/{r.json()['id']}/confirm",
                                     headers=auth)
                assert c.status_code == 200, c.text
    created = outcomes.count(201)
    assert created == 3 and outcomes.count(409) == 3, outcomes  # 3 units, then sold out

    sockets = [await connect(svc, stream.id, viewers[i % 3][1]) for i in range(6)]
    try:
        samples = await until(lambda s: value(s, "livecart_ws_connections") == 6, svc)
        # Every scrape, whichever worker answers it, sees all six sockets.
        for _ in range(4):
            assert value(await asyncio.to_thread(scrape, svc), "livecart_ws_connections") == 6
        sent_before = value(samples, "livecart_ws_messages_sent_total")
        for n in range(3):
            r = await fresh.post(f"/api/streams/{stream.id}/messages",
                                 headers=stream.auth, json={"text": f"hi {n}"})
            assert r.status_code == 202, r.text
        for ws in sockets:
            seen = 0
            while seen < 3:
                if '"host.message"' in str(await asyncio.wait_for(ws.recv(), 10)):
                    seen += 1
        # Each of the 3 messages went to each of the 6 sockets (plus viewer counts).
        samples = await until(
            lambda s: value(s, "livecart_ws_messages_sent_total") - sent_before >= 18, svc
        )
    finally:
        await fresh.aclose()
        for ws in sockets:
            await ws.close()
    samples = await until(lambda s: value(s, "livecart_ws_connections") == 0, svc)

    def grew(name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    assert grew("livecart_reservations_total", outcome="created") == 3
    assert grew("livecart_reservations_total", outcome="sold_out") == 3
    assert grew("livecart_confirms_total", outcome="paid") == 3
    assert grew("livecart_reservation_duration_seconds_count") == 6
    reserve_route = "/api/streams/{sid}/reservations"
    assert grew("livecart_http_request_duration_seconds_count",
                route=reserve_route, method="POST") == 6
    assert grew("livecart_http_requests_total", route=reserve_route, status="409") == 3
    assert grew("livecart_http_request_duration_seconds_count",
                route="/api/reservations/{rid}/confirm") == 3
    # Route templates only: no stream or reservation id ever becomes a label value.
    labels = {v for (_, ls) in samples for _, v in ls}
    assert not any(stream.id in v for v in labels), labels
    assert value(samples, "livecart_redis_roundtrip_seconds_count", command="EVALSHA") > 0
    assert ("livecart_drain_lag", ()) in samples
    # The in-process drainers commit the stream's events (stream, products, orders).
    await until(lambda s: value(s, "livecart_orders_drained_total")
                - value(before, "livecart_orders_drained_total") >= 6, svc)

    assert svc.stop() == 0
    assert private_dirs(svc.proc.pid) == []  # and removed on exit


@pytest.mark.slow
async def test_a_dead_workers_sockets_stop_counting(
    start_service, redis_url: str, tmp_path: Path
) -> None:
    """uvicorn replaces a killed worker; the sockets it held leave the gauge."""
    env = service_env(redis_url, f"sqlite+aiosqlite:///{tmp_path}/d.db")
    svc: ServiceProcess = start_service(env, "--workers", "2")
    assert svc.proc is not None
    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as api:
        stream = await new_stream(api, "dead worker")
    sockets = [await connect(svc, stream.id, "") for _ in range(8)]
    try:
        await until(lambda s: value(s, "livecart_ws_connections") == 8, svc)
        # Which worker holds which socket: the server side of each client's port.
        workers = psutil.Process(svc.proc.pid).children()
        held = {
            w.pid: sum(
                1 for c in w.net_connections("tcp")
                if c.laddr and c.laddr.port == svc.port and c.raddr
            )
            for w in workers
        }
        victim = max(held, key=lambda pid: held[pid])
        assert held[victim] > 0, held
        os.kill(victim, signal.SIGKILL)
        left = 8 - held[victim]
        await until(lambda s: value(s, "livecart_ws_connections") == left, svc, 30)
    finally:
        for ws in sockets:
            try:
                await asyncio.wait_for(ws.close(), 5)
            except Exception:
                pass


def test_single_worker_serves_its_own_registry(
    start_service, redis_url: str, tmp_path: Path
) -> None:
    env = service_env(redis_url, f"sqlite+aiosqlite:///{tmp_path}/s.db")
    svc: ServiceProcess = start_service(env)
    assert svc.proc is not None and private_dirs(svc.proc.pid) == []
    r = httpx.get(f"{svc.url}/api/streams/nope-{secrets.token_hex(4)}")
    assert r.status_code == 404
    httpx.get(f"{svc.url}/no/such/path")
    samples = scrape(svc)
    assert value(samples, "livecart_http_requests_total",
                 route="/api/streams/{sid}", status="404") == 1
    assert value(samples, "livecart_http_requests_total", route="unmatched") == 1
    for name in ("livecart_ws_connections", "livecart_ws_messages_sent_total",
                 "livecart_ws_messages_dropped_total", "livecart_orders_drained_total",
                 "livecart_drain_lag"):
        assert any(n == name for n, _ in samples), name


@pytest.mark.slow
def test_live_drain_serves_its_own_metrics(
    start_service, redis_url: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from conftest import free_port

    db = f"sqlite+aiosqlite:///{tmp_path}/drain.db"
    own = service_env(redis_url, db, LIVE_DRAIN_GROUP=OWN_GROUP)
    svc: ServiceProcess = start_service(own, "--no-drain")
    port = free_port()
    env = service_env(redis_url, db, LIVE_DRAIN_METRICS_PORT=str(port), LIVE_DRAIN_GROUP=OWN_GROUP)
    log_path = tmp_path / "drain.log"
    with open(log_path, "wb") as log:
        drain = subprocess.Popen([sys.executable, "-m", "live.cli", "drain"], env=env,
                                 cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        r = httpx.post(svc.url + "/api/streams", json={"title": "apart", "host_name": "A"})
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 30
        drained = 0.0
        while drained < 1:  # the stream's creation event, committed by this drainer
            assert drain.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                continue
            drained = sum(
                s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "livecart_orders_drained_total"
            )
    finally:
        drain.send_signal(signal.SIGTERM)
        assert drain.wait(20) == 0

    bad = service_env(redis_url, db, LIVE_DRAIN_METRICS_PORT="http")
    done = subprocess.run([sys.executable, "-m", "live.cli", "drain"], env=bad, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "LIVE_DRAIN_METRICS_PORT" in done.stderr, done.stderr
