"""Engine and schema (Alembic migrations) of the order store."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_incrementing,
)

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger("orders.db")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Any constant: serialises concurrent migrations of several processes on PostgreSQL.
_MIGRATION_LOCK_ID = 0x6C697665


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            # The default file lives in LIVE_DATA_DIR, which may not exist yet.
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # WAL lets readers (the orders API) run while the drainer writes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def alembic_config() -> Config:
    # Alembic is imported only by the process that migrates (its import, with every
    # dialect's DDL, is a tenth of a worker's start; workers of `live serve --workers N`
    # find the schema ready).
    from alembic.config import Config

    cfg = Config()
    # Next to this module, so that it resolves from an installed package too.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _upgrade(conn: Connection) -> None:
    # Alembic narrates every start at INFO (its context, then one line per plugin it
    # sets up); only what goes wrong is worth a line.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


async def create_schema(engine: AsyncEngine, attempts: int = 20) -> None:
    """Bring the schema to the newest migration; safe when several processes start."""
    # SQLite has no advisory lock: a process that loses the race to create a table sees
    # "already exists" and tries again once the winner is done (waits of 0.05 s, 0.1 s,
    # ... as before). PostgreSQL serialises the migrations itself: no retry there.
    sqlite = engine.dialect.name == "sqlite"

    def raced(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info("schema migration raced another process (%s); retrying",
                 getattr(exc, "orig", exc))

    async for attempt in AsyncRetrying(
        retry=retry_if_exception(lambda exc: sqlite and isinstance(exc, DBAPIError)),
        stop=stop_after_attempt(attempts),
        wait=wait_incrementing(start=0.05, increment=0.05),
        before_sleep=raced,
        reraise=True,
    ):
        with attempt:
            async with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_ID}
                    )
                await conn.run_sync(_upgrade)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
