"""Engine, schema (Alembic migrations) and sessions of the order store."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

log = logging.getLogger("orders.db")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Any constant: serialises concurrent migrations of several processes on PostgreSQL.
_MIGRATION_LOCK_ID = 0x6C697665


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
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
    cfg = Config()
    # Next to this module, so that it resolves from an installed package too.
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _upgrade(conn: Connection) -> None:
    # Alembic narrates every start at INFO; only what it changes is worth a line.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


async def create_schema(engine: AsyncEngine, attempts: int = 20) -> None:
    """Bring the schema to the newest migration; safe when several processes start."""
    for attempt in range(1, attempts + 1):
        try:
            async with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_ID}
                    )
                await conn.run_sync(_upgrade)
            return
        except DBAPIError as exc:
            # SQLite has no advisory lock: a process that loses the race to create a
            # table sees "already exists" and tries again once the winner is done.
            if attempt == attempts or engine.dialect.name != "sqlite":
                raise
            log.info("schema migration raced another process (%s); retrying", exc.orig)
            await asyncio.sleep(0.05 * attempt)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def sessions(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)
