"""The service on a real Redis Cluster (tests/cluster_fixtures.py starts one): its
environment, which masters hold which streams, and reconciling streams there."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
from redis.asyncio.cluster import RedisCluster

from helpers.api import HostedStream, new_stream
from helpers.services import service_env
from orders.db import make_engine
from orders.reconcile import reconcile


def cluster_env(url: str, database_url: str, **extra: str) -> dict[str, str]:
    # Each service on the cluster drains into its own SQLite file, so each has its own
    # consumer group (LIVE_DRAIN_GROUP): one shared group would split the events.
    return service_env(url, database_url, LIVE_REDIS_CLUSTER="1", **extra)


def masters(cluster: RedisCluster, sids: list[str]) -> set[str]:
    """The masters holding these streams."""
    return {cluster.get_node_from_key(f"inv:{{{sid}}}:stock").name for sid in sids}


async def streams_on_two_masters(
    api: httpx.AsyncClient, cluster: RedisCluster, count: int, title: str
) -> list[HostedStream]:
    """`count` new streams, held by at least two masters. Stream ids are random: with
    three masters all of four land on one in one run of 27, so the last is made again
    until a second master holds one."""
    streams = [await new_stream(api, f"{title} {i}") for i in range(count)]
    while len(masters(cluster, [s.id for s in streams])) < 2:
        streams[-1] = await new_stream(api, f"{title} {count - 1}")
    return streams


def _reconcile_cli(env: dict[str, str], sid: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "live.cli", "reconcile", sid, "--wait", "20"],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
    )


async def reconcile_all(
    env: dict[str, str], cluster: RedisCluster, sids: list[str], cwd: Path, cli: bool = False
) -> None:
    """Reconcile each stream in this process (a `live reconcile` process start each would
    take seconds); with `cli`, the first one through `live reconcile` and its own client."""
    if cli:
        done = await asyncio.to_thread(_reconcile_cli, env, sids[0], cwd)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "OK: Redis and SQL agree" in done.stdout, done.stdout
        sids = sids[1:]
    engine = make_engine(env["LIVE_DATABASE_URL"])
    try:
        for sid in sids:
            report = await reconcile(cluster, engine, sid, 20, env["LIVE_DRAIN_GROUP"])
            assert report.agree, report.render()
    finally:
        await engine.dispose()
