"""The service as a real process: `live serve` on a free loopback port."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_SECRET = "test-secret-" + secrets.token_hex(8)
# uvicorn logs this (at INFO) in each worker once its lifespan has started everything.
# (The app's own "worker N ready" line is not seen from workers of `--workers N`: only
# uvicorn's loggers are configured there.)
WORKER_READY = re.compile(rb"Application startup complete\.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _workers(args: list[str]) -> int:
    for i, arg in enumerate(args[:-1]):
        if arg == "--workers":
            return int(args[i + 1])
    return 1


@dataclass
class ServiceProcess:
    """`live serve` running in a subprocess, on a free port of 127.0.0.1."""

    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # Generous: on a 2-core machine shared with other test runs a start has taken a
    # minute. A start that hangs still fails, only later.
    def start(self, log_dir: Path, timeout_s: float = 120.0) -> ServiceProcess:
        """Start and return once it serves: `/healthz` answers 200 and, with `--workers N`,
        every one of the N workers has logged that it is ready (a request may reach any
        of them, so the first worker's answer alone is not enough)."""
        self.log_path = log_dir / f"service-{self.port}.log"
        cmd = [sys.executable, "-m", "live.cli", "serve", "--port", str(self.port), *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=log_dir
            )
        workers = _workers(self.args)
        # Ready lines are logged at INFO; at a quieter level only /healthz is known.
        count_ready = workers > 1 and self.env.get("LIVE_LOG_LEVEL", "info") in ("info", "debug")
        deadline = time.monotonic() + timeout_s
        healthy = False
        delay = 0.02
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"live serve exited early:\n{self.log()}")
            if not healthy:
                try:
                    healthy = httpx.get(self.url + "/healthz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    pass
            if healthy and (not count_ready or self.ready_workers() >= workers):
                return self
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        self.stop()
        raise RuntimeError(f"live serve did not become ready:\n{self.log()}")

    def ready_workers(self) -> int:
        return len(WORKER_READY.findall(self.log_path.read_bytes())) if self.log_path else 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# The consumer group of the session's shared `service` fixture (see it in conftest).
SERVICE_DRAIN_GROUP = "orders_session"


def service_env(redis_url: str | None, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    env.update(
        LIVE_DATABASE_URL=database_url,
        LIVE_SECRET=TEST_SECRET,
        LIVE_LOG_LEVEL="info",
        # The suite mints many viewers and streams from 127.0.0.1 (tests of the limit set it).
        LIVE_SIGNUP_PER_MIN="0",
        # httpx pools do not retry a request that raced the server closing an idle
        # connection; the 5 s production default is tested in test_limits_http.py.
        LIVE_HTTP_KEEPALIVE_S="75",
        PYTHONPATH=str(ROOT),
    )
    if redis_url:
        env["LIVE_REDIS_URL"] = redis_url
    env.update(extra)
    return env


@contextlib.contextmanager
def service_pair(env: dict[str, str], log_dir: Path) -> Iterator[tuple[ServiceProcess, ...]]:
    """Two service processes on the same Redis: one audience split over both. They
    start side by side (most of a start is waiting for imports and the lifespan)."""
    pair = (ServiceProcess(env=dict(env)), ServiceProcess(env=dict(env)))
    try:
        start_all(pair, log_dir)
        yield pair
    finally:
        stop_all(pair)


def start_all(services: tuple[ServiceProcess, ...] | list[ServiceProcess], log_dir: Path) -> None:
    """Start several services concurrently and wait for all of them."""
    with concurrent.futures.ThreadPoolExecutor(len(services)) as pool:
        for future in [pool.submit(svc.start, log_dir) for svc in services]:
            future.result()


def stop_all(services: tuple[ServiceProcess, ...] | list[ServiceProcess]) -> None:
    """SIGTERM to all, then wait for each: their graceful shutdowns overlap."""
    for svc in services:
        if svc.proc is not None and svc.proc.poll() is None:
            svc.proc.send_signal(signal.SIGTERM)
    for svc in services:
        svc.stop()


def module_service_pair(
    extra_env: dict[str, str], name: str
) -> Callable[..., Iterator[tuple[ServiceProcess, ...]]]:
    """A module-scoped fixture: two service processes on this worker's Redis with
    `extra_env`, started once for the module's tests."""

    @pytest.fixture(scope="module")
    def pair(
        redis_url: str, sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[tuple[ServiceProcess, ...]]:
        env = service_env(redis_url, sqlite_url, **extra_env)
        with service_pair(env, tmp_path_factory.mktemp(name)) as started:
            yield started

    return pair
