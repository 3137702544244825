"""The service on a real 3-master Redis Cluster (LIVE_REDIS_CLUSTER=1), a fresh process
without a drainer of its own and `live drain` beside it: many first joins at the same
moment over every master, then the sweeper, the drain into SQL, `live reconcile` and
retention with streams spread over every master."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from helpers.api import new_viewer
from helpers.cluster import cluster_env, reconcile_all, streams_on_two_masters
from helpers.fanout import check_concurrent_joins
from helpers.services import ServiceProcess
from helpers.ws import recv_type
from redis.asyncio.cluster import RedisCluster

# One cluster per session: both cluster modules run on the same xdist worker.
pytestmark = pytest.mark.xdist_group("redis-cluster")


@pytest.fixture(scope="module")
def fresh(
    redis_cluster_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, dict[str, str]]]:
    """One process without a drainer of its own and a `live drain` beside it; short
    reservations and immediate retirement of ended streams."""
    log_dir = tmp_path_factory.mktemp("cluster-fresh")
    env = cluster_env(
        redis_cluster_url,
        f"sqlite+aiosqlite:///{log_dir}/live.db",
        LIVE_RESERVATION_TTL_S="1",
        LIVE_STREAM_RETENTION_S="0",
        LIVE_RETENTION_INTERVAL_MS="200",
        LIVE_DRAIN_REFRESH_MS="200",
        LIVE_DRAIN_GROUP="fresh",
    )
    with open(log_dir / "drain.log", "wb") as log:
        drain = subprocess.Popen([sys.executable, "-m", "live.cli", "drain"], env=env,
                                 cwd=log_dir, stdout=log, stderr=subprocess.STDOUT)
    try:
        svc = ServiceProcess(env=env, args=["--no-drain"]).start(log_dir)
        try:
            yield svc, env
        finally:
            svc.stop()
    finally:
        drain.send_signal(signal.SIGTERM)
        assert drain.wait(20) == 0, (log_dir / "drain.log").read_text()



# --- first joins, then the sweeper and retention ----------------------


async def test_concurrent_first_joins_on_a_fresh_process(
    fresh: tuple[ServiceProcess, dict[str, str]],
) -> None:
    """Runs first on `fresh`: 24 streams (spread over the 3 masters) x 3 viewers joined
    at the same moment all hear their stream's next broadcast."""
    await check_concurrent_joins(fresh[0], streams=24, viewers=3)


async def test_sweeper_and_retention(
    fresh: tuple[ServiceProcess, dict[str, str]], cluster: RedisCluster, tmp_path: Path
) -> None:
    svc, env = fresh
    async with httpx.AsyncClient(base_url=svc.url, timeout=15) as api:
        streams = await streams_on_two_masters(api, cluster, 6, "sweep")
        _, token = await new_viewer(api)
        auth = {"Authorization": f"Bearer {token}"}
        for s in streams:
            r = await api.post(f"/api/streams/{s.id}/products", headers=s.auth,
                               json={"sku": "cap", "title": "Cap", "price_cents": 900, "stock": 5})
            assert r.status_code == 201, r.text
        first = streams[0]
        ws = await websockets.connect(f"{svc.ws_url}/ws/streams/{first.id}", max_queue=None)
        await recv_type(ws, "hello", 10)
        r = await api.post(f"/api/streams/{first.id}/sales", headers=first.auth,
                           json={"sku": "cap", "price_cents": 500, "stock": 2, "duration_s": 1})
        assert r.status_code == 201, r.text
        for s in streams:
            r = await api.post(f"/api/streams/{s.id}/reservations", headers=auth,
                               json={"sku": "cap", "qty": 2, "key": "k"})
            assert r.status_code == 201, r.text
        # The sale ends by time and every reservation expires (TTL 1 s): stock comes back.
        ended = await recv_type(ws, "sale.ended", 10)
        assert ended["data"]["reason"] in ("time", "sold_out")
        await ws.close()
        deadline = time.monotonic() + 15
        for s in streams:
            while True:
                state = (await api.get(f"/api/streams/{s.id}")).json()
                if state["products"][0]["stock_left"] == 5:
                    break
                assert time.monotonic() < deadline, state
                await asyncio.sleep(0.1)
        await reconcile_all(env, cluster, [s.id for s in streams], tmp_path, cli=True)

        # Ended and drained: retired at once (LIVE_STREAM_RETENTION_S=0), on every master.
        for s in streams:
            assert (await api.post(f"/api/streams/{s.id}/end", headers=s.auth)).status_code == 200
        deadline = time.monotonic() + 20
        for s in streams:
            while not (await api.get(f"/api/streams/{s.id}")).json().get("archived"):
                assert time.monotonic() < deadline, f"{s.id} not retired"
                await asyncio.sleep(0.1)
            assert not await cluster.sismember("live:streams", s.id)
            left = await _stream_keys(cluster, s.id)
            without_ttl = [k for k in left if await cluster.pttl(k) < 0]
            assert not without_ttl, without_ttl


async def _stream_keys(cluster: RedisCluster, sid: str) -> list[str]:
    node = cluster.get_node_from_key(f"x{{{sid}}}")
    return [k async for k in cluster.scan_iter(match=f"*{{{sid}}}*", target_nodes=node)]
