"""Real servers for the tests: Redis and SQL, and the service itself as a subprocess.

By default an embedded Redis is started for the session and the order store is SQLite.
`LIVE_TEST_REDIS_URL` points the tests at another Redis; `LIVE_TEST_DATABASE_URL` (a
`postgresql+asyncpg://` URL) adds PostgreSQL: every test that takes the `database_url`
fixture then runs once on SQLite and once on a fresh PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from cluster_fixtures import cluster, redis_cluster, redis_cluster_url  # noqa: F401
from helpers.api import HostedStream, new_stream, new_viewer
from helpers.chat import CHAT_ENV
from helpers.services import (
    ROOT,
    SERVICE_DRAIN_GROUP,
    TEST_SECRET,
    ServiceProcess,
    free_port,
    service_env,
    service_pair,
    stop_all,
)
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from inventory.reservations import Reservations
from live.embedded_redis import EmbeddedRedis

# Re-exported for test modules that still import them from here; new code imports
# them from `helpers`.
__all__ = [
    "ROOT",
    "TEST_SECRET",
    "HostedStream",
    "ServiceProcess",
    "free_port",
    "new_stream",
    "new_viewer",
    "service_env",
    "service_pair",
]


# First: pytest-xdist's own hook (on each worker) reads the `xdist_group` marks added here.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`): the tests marked `heavy` (they keep both
    cores busy) run one after another on one worker, so they do not starve each other
    into timeouts on a small machine; the tests that share a module-scoped fixture (a
    pair of service processes, a private Redis) run on one worker, so it is started once;
    every other test goes to whichever worker is free. A module that names its group
    itself (`pytestmark = pytest.mark.xdist_group(...)`: modules sharing a session-scoped
    service) keeps it."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        if item.get_closest_marker("heavy") is not None:
            item.add_marker(pytest.mark.xdist_group("heavy"))
            continue
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        defs = [d for ds in info.name2fixturedefs.values() for d in ds]
        if any(d.scope == "module" for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def _xdist_can_tag_node_ids() -> bool:
    """pytest-xdist's loadgroup tags a grouped test by setting `item._nodeid` to
    `<id>@<group>`: true when this pytest's `nodeid` reads it back."""

    class Probe:
        _nodeid = "probe@group"

    try:
        return pytest.Item.nodeid.fget(Probe()) == "probe@group"  # type: ignore[attr-defined]
    except AttributeError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    # A grouping that silently does nothing starts every module-scoped service once per
    # worker and runs the heavy tests side by side (pytest 9.2 did that to xdist 3.8).
    if config.getoption("dist", "no") == "loadgroup" and not _xdist_can_tag_node_ids():
        raise pytest.UsageError(
            "--dist loadgroup cannot group tests with this pytest and pytest-xdist "
            "(node ids are no longer tagged); install the versions pyproject.toml pins"
        )


def worker_index() -> int:
    """0 without pytest-xdist, else N of this worker's id `gwN`."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") else 0


def per_worker_redis_url(url: str, index: int) -> str:
    """The database `index` places after the URL's own: each xdist worker gets a keyspace
    of its own on a shared server, so registry-wide keys (`live:streams`, the ended
    registry, the dead letters) and the unsharded drainers that walk them never see
    another worker's streams. (Pub/Sub ignores databases, but every channel is a
    stream's own, named by its random id.)"""
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    if index == 0:
        return url
    db = base + index
    if db > 15:
        raise pytest.UsageError(
            f"LIVE_TEST_REDIS_URL {url}: worker {index} would need database {db}; "
            "run fewer xdist workers (-n) or use a lower database number"
        )
    return urlunsplit(parts._replace(path=f"/{db}"))


# --- Redis -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis of this worker's own: a database of the shared server named by
    `LIVE_TEST_REDIS_URL`, or else an embedded server started for the session."""
    url = os.environ.get("LIVE_TEST_REDIS_URL")
    if url:
        mine = per_worker_redis_url(url, worker_index())
        empty_database(mine)
        yield mine
        return
    with EmbeddedRedis() as server:
        yield server.url


def empty_database(url: str) -> None:
    """The suite owns its databases: empty this one before the session's first service.
    Streams left by earlier runs would otherwise pile up run after run, and every test
    service draining in a fresh consumer group starts at id 0 of every stream listed, so
    it would first copy all of that history into its own SQL database, sharing each
    batch fairly between those streams and its own (the likely cause of a crash test's
    drain running past its minute in CI, on a machine with many earlier runs behind it)."""
    with SyncRedis.from_url(url) as client:
        client.flushdb()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def private_redis_url() -> Iterator[str]:
    """An embedded Redis of the module's own: no service's sweeper or drainer shares it,
    so tests that count who expired what, or how many scripts ran, see only their own."""
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
async def private_redis(private_redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(private_redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def pooled(redis_url: str) -> AsyncIterator[Redis]:
    """A client of this worker's Redis with room for hundreds of commands in flight."""
    client = Redis.from_url(redis_url, decode_responses=True, max_connections=600)
    yield client
    await client.aclose()


@pytest.fixture
def res(pooled: Redis) -> Reservations:
    """The reservation scripts with a one-minute hold and no buy rate limit."""
    return Reservations(pooled, ttl_s=60, buys_per_window=0)


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


@pytest.fixture(scope="session")
def deployment_database_url(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> str:
    """One order store, for the end-to-end runs whose subject is the service under load
    rather than SQL (the load test): PostgreSQL when the run has one, as a production
    deployment would, else SQLite. Running them once per store would double the suite's
    costliest tests for nothing the order-store tests (`database_url`: both stores) do not
    already cover."""
    if os.environ.get("LIVE_TEST_DATABASE_URL"):
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite-deploy') / 'live.db'}"


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


# The services a test started: their logs go into its report when it fails.
STARTED = pytest.StashKey[list[ServiceProcess]]()
LOG_TAIL_LINES = 80


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator:
    """A failed test that started services shows the end of each one's log: the
    service's own account of a crash or a stall, which the assertion cannot give."""
    report = yield
    if report.failed and call.when == "call":
        for svc in item.stash.get(STARTED, []):
            lines = svc.log().splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"log of service on port {svc.port}", "\n".join(lines)))
    return report


@pytest.fixture
def start_service(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator:
    """Factory: start_service(env, *args) -> a running ServiceProcess, stopped after."""
    started: list[ServiceProcess] = []
    request.node.stash[STARTED] = started

    def start(env: dict[str, str], *args: str) -> ServiceProcess:
        svc = ServiceProcess(env=env, args=list(args)).start(tmp_path)
        started.append(svc)
        return svc

    yield start
    stop_all(started)


@pytest.fixture(scope="session")
def service(
    redis_url: str, sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """One service process shared by the tests of the HTTP API. It drains in a consumer
    group of its own: with the default group it would take events of the streams that
    later tests' own services are meant to drain (both run on this worker's Redis)."""
    env = service_env(redis_url, sqlite_url, LIVE_DRAIN_GROUP=SERVICE_DRAIN_GROUP)
    svc = ServiceProcess(env=env).start(
        tmp_path_factory.mktemp("service")
    )
    yield svc
    svc.stop()


@pytest.fixture
async def client(service: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as c:
        yield c


@pytest.fixture
async def stream(client: httpx.AsyncClient) -> HostedStream:
    return await new_stream(client)


# --- the chat tests' pair of processes ------------------------------------------------


@pytest.fixture(scope="session")
def chat_pair(
    redis_url: str, sqlite_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ...]]:
    """Two service processes on this worker's Redis with the chat limits of
    helpers/chat.py, shared by the chat modules (they name the xdist group `chat`, so
    that the pair is started once)."""
    env = service_env(redis_url, sqlite_url, LIVE_DRAIN_GROUP="orders_chat", **CHAT_ENV)
    with service_pair(env, tmp_path_factory.mktemp("chat")) as pair:
        yield pair


@pytest.fixture
async def chat_api(chat_pair: tuple[ServiceProcess, ...]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=chat_pair[0].url, timeout=10) as c:
        yield c


@pytest.fixture
async def chat_stream(chat_api: httpx.AsyncClient) -> HostedStream:
    return await new_stream(chat_api)
