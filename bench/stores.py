"""A fresh order store for a benchmark run (a SQLite file, or a PostgreSQL database that
is created for the run and dropped after it), and the PostgreSQL server's CPU: like
Redis', a database server's work is shown beside the service's, not inside it."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import psutil

PG_URL = os.environ.get("LIVE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """The LIVE_DATABASE_URL of a fresh store of `kind` (`sqlite` or `postgresql`)."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / f'bench-{secrets.token_hex(4)}.db'}"
        return
    name = f"dur_confirm_bench_{secrets.token_hex(4)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        head = PG_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{head}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def sql_server_cpu() -> float:
    """CPU seconds of every running PostgreSQL server process (0 without one)."""
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    return total
