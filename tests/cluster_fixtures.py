"""A real Redis Cluster for the tests: three masters on loopback, no replicas, started
once per session with `redis-server --cluster-enabled yes` and `redis-cli --cluster
create`, and stopped at its end. (conftest.py imports the fixtures.)"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

MASTERS = 3
BUS_OFFSET = 10000  # Redis Cluster's bus listens on port + 10000


@dataclass
class RedisClusterServers:
    ports: list[int]
    procs: list[subprocess.Popen[bytes]]
    dir: Path

    @property
    def url(self) -> str:
        """Any node will do: the clients read the slot map from it."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    def cli(self, port: int, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(port), *args],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(n: int) -> list[int]:
    """`n` free ports whose bus ports (+10000) are free too, below the kernel's
    ephemeral range so that no client connection takes one meanwhile."""
    ports: list[int] = []
    while len(ports) < n:
        port = random.randrange(17000, 22000)
        if port not in ports and _free(port) and _free(port + BUS_OFFSET):
            ports.append(port)
    return ports


def _wait(check: object, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (subprocess.SubprocessError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"redis cluster: {what} timed out")


def start_redis_cluster(root: Path) -> RedisClusterServers:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        raise RuntimeError("redis-server and redis-cli must be on PATH for the cluster tests")
    ports = _cluster_ports(MASTERS)
    procs = []
    for port in ports:
        node_dir = root / str(port)
        node_dir.mkdir()
        procs.append(subprocess.Popen(
            [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "2000", "--dir", str(node_dir),
                "--save", "", "--appendonly", "no", "--logfile", str(node_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    servers = RedisClusterServers(ports, procs, root)
    try:
        for port in ports:
            _wait(lambda p=port: servers.cli(p, "ping").strip() == "PONG", f"node {port} start")
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=30, check=True,
        )
        for port in ports:
            _wait(
                lambda p=port: "cluster_state:ok" in servers.cli(p, "cluster", "info"),
                f"node {port} cluster_state:ok",
            )
    except BaseException:
        servers.stop()
        raise
    return servers


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    servers = start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
    yield servers
    servers.stop()


@pytest.fixture(scope="session")
def redis_cluster_url(redis_cluster: RedisClusterServers) -> str:
    return redis_cluster.url


@pytest.fixture
async def cluster(redis_cluster_url: str) -> AsyncIterator[RedisCluster]:
    """A cluster client of the test's own."""
    client = RedisCluster.from_url(redis_cluster_url, decode_responses=True)
    await client.initialize()
    yield client
    await client.aclose()
