"""Real servers for the tests: Redis and SQL, and the service itself as a subprocess.

By default an embedded Redis is started for the session and the order store is SQLite.
`LIVE_TEST_REDIS_URL` points the tests at another Redis; `LIVE_TEST_DATABASE_URL` (a
`postgresql+asyncpg://` URL) adds PostgreSQL: every test that takes the `database_url`
fixture then runs once on SQLite and once on a fresh PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from live.embedded_redis import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-" + secrets.token_hex(8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- Redis -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("LIVE_TEST_REDIS_URL")
    if url:
        yield url
        return
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


# --- SQL ---------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" in metafunc.fixturenames:
        kinds = ["sqlite"]
        if os.environ.get("LIVE_TEST_DATABASE_URL"):
            kinds.append("postgresql")
        metafunc.parametrize("database_kind", kinds, scope="session")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at its end."""
    base = os.environ["LIVE_TEST_DATABASE_URL"]
    import asyncpg

    name = f"livetest_{secrets.token_hex(6)}"
    admin_dsn = base.replace("postgresql+asyncpg://", "postgresql://")

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    head, _, _ = base.rpartition("/")
    yield f"{head}/{name}"
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def database_url(
    database_kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> str:
    if database_kind == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    path = tmp_path_factory.mktemp("sqlite") / "live.db"
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def orders_engine(database_url: str) -> AsyncIterator[object]:
    """An engine on `database_url` with the order store's schema migrated."""
    from orders.db import create_schema, make_engine

    engine = make_engine(database_url)
    await create_schema(engine)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLite only, for tests of the service that are not about the order store."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite-default') / 'live.db'}"


# --- the service as a real process -------------------------------------------------


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

    def start(self, log_dir: Path, timeout_s: float = 30.0) -> ServiceProcess:
        self.log_path = log_dir / f"service-{self.port}.log"
        cmd = [sys.executable, "-m", "live.cli", "serve", "--port", str(self.port), *self.args]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=log_dir
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"live serve exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"live serve did not become healthy:\n{self.log()}")

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


def service_env(redis_url: str | None, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    env.update(
        LIVE_DATABASE_URL=database_url,
        LIVE_SECRET=TEST_SECRET,
        LIVE_LOG_LEVEL="info",
        PYTHONPATH=str(ROOT),
    )
    if redis_url:
        env["LIVE_REDIS_URL"] = redis_url
    env.update(extra)
    return env


@contextlib.contextmanager
def service_pair(env: dict[str, str], log_dir: Path) -> Iterator[tuple[ServiceProcess, ...]]:
    """Two service processes on the same Redis: one audience split over both."""
    started: list[ServiceProcess] = []
    try:
        for _ in range(2):
            started.append(ServiceProcess(env=dict(env)).start(log_dir))
        yield tuple(started)
    finally:
        for svc in started:
            svc.stop()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator:
    """Factory: start_service(env, *args) -> a running ServiceProcess, stopped after."""
    started: list[ServiceProcess] = []

    def start(env: dict[str, str], *args: str) -> ServiceProcess:
        svc = ServiceProcess(env=env, args=list(args)).start(tmp_path)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.stop()


@pytest.fixture(scope="session")
def service(
    redis_url: str, sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """One service process shared by the tests of the HTTP API."""
    svc = ServiceProcess(env=service_env(redis_url, sqlite_url)).start(
        tmp_path_factory.mktemp("service")
    )
    yield svc
    svc.stop()


@pytest.fixture
async def client(service: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as c:
        yield c


# --- helpers for the API tests ------------------------------------------------------


@dataclass
class HostedStream:
    id: str
    host_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.host_token}"}


async def new_stream(client: httpx.AsyncClient, title: str = "Spring drop") -> HostedStream:
    r = await client.post("/api/streams", json={"title": title, "host_name": "Ann"})
    assert r.status_code == 201, r.text
    body = r.json()
    return HostedStream(id=body["id"], host_token=body["host_token"])


async def new_viewer(client: httpx.AsyncClient, name: str = "Bo") -> tuple[str, str]:
    r = await client.post("/api/viewers", json={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["viewer_id"], r.json()["token"]


@pytest.fixture
async def stream(client: httpx.AsyncClient) -> HostedStream:
    return await new_stream(client)
