"""`live serve` with embedded defaults: it starts its own Redis-compatible server, stops it
on SIGINT/SIGTERM, and leaves no orphan behind even when it is killed."""

from __future__ import annotations

import signal
import time

import httpx
import psutil
import pytest
from helpers.services import ServiceProcess, service_env

from live.embedded_redis import EmbeddedRedis

# Services started, signalled and killed, one each per test.
pytestmark = pytest.mark.slow


def embedded_servers(pid: int) -> list[psutil.Process]:
    return [
        p for p in psutil.Process(pid).children(recursive=True)
        if "valkey-server" in " ".join(p.cmdline())
    ]


def wait_gone(procs: list[psutil.Process], timeout_s: float = 10) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    return not alive


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_embedded_server_is_stopped_on_signal(start_service, sqlite_url: str, sig: int) -> None:
    svc: ServiceProcess = start_service(service_env(None, sqlite_url))
    servers = embedded_servers(svc.proc.pid)
    assert len(servers) == 1
    assert httpx.get(svc.url + "/healthz").json()["redis"] == "ok"
    assert svc.stop(sig) == 0
    assert wait_gone(servers)


def test_no_orphan_when_service_is_killed(start_service, sqlite_url: str) -> None:
    svc: ServiceProcess = start_service(service_env(None, sqlite_url), "--workers", "2")
    servers = embedded_servers(svc.proc.pid)
    assert len(servers) == 1
    workers = [p for p in psutil.Process(svc.proc.pid).children() if p not in servers]
    svc.proc.kill()  # SIGKILL: no handler of ours runs
    svc.proc.wait()
    assert wait_gone(servers), "the embedded Redis outlived `live serve`"
    # Workers notice their parent is gone and exit too.
    assert wait_gone(workers, 15)


def test_nothing_is_started_when_redis_url_is_set(
    start_service, redis_url: str, sqlite_url: str
) -> None:
    svc: ServiceProcess = start_service(service_env(redis_url, sqlite_url))
    assert embedded_servers(svc.proc.pid) == []


def test_healthz_is_503_when_redis_is_down(start_service, sqlite_url: str) -> None:
    redis = EmbeddedRedis()
    url = redis.start()
    try:
        svc: ServiceProcess = start_service(service_env(url, sqlite_url))
        assert httpx.get(svc.url + "/healthz").status_code == 200
    finally:
        redis.stop()
    deadline = time.monotonic() + 10
    while True:
        r = httpx.get(svc.url + "/healthz", timeout=10)
        if r.status_code == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 503
    assert r.json()["status"] == "degraded"
    assert r.json()["redis"].startswith("error") and r.json()["db"] == "ok"
