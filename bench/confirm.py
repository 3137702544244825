"""Confirm latency in a flash-sale burst: the durable path against the old one.

    .venv/bin/python bench/confirm.py [--confirms 2000] [--rounds 2] [--old-ref 48046d0]

For each order store (SQLite, then PostgreSQL): a stream with one product of `--confirms`
units, as many viewers, one reservation each; then every viewer confirms at the same
moment (one connection each, opened beforehand) and the latency of each confirm is taken
from the start of the burst to its 200 (what a viewer pressing Pay at that moment waits);
a 503 `try_again` is retried after its `Retry-After`, as a client would, and counted.

- new: this tree's `live serve`: a confirm answers 200 once its paid row is committed
  to SQL (group commit, orders/group_commit.py).
- old: `live serve` of `--old-ref` (the commit before the durable confirm), checked out
  with `git worktree` into a temporary directory and run from there with the same
  virtualenv, so the old behaviour is measured as it shipped, with no switch left in the
  service to turn durability off. Its confirm answers once Redis has the decision; the
  drainer writes the row later.

Both run the in-process drainer (the default), on a private embedded valkey each, with a
fresh SQLite file or PostgreSQL database each (LIVE_BENCH_PG_URL, default
postgresql://postgres@127.0.0.1:5432/test: a database `dur_confirm_bench_*` is created
and dropped). After each burst the paid rows already in SQL are counted: the durable path
must show every confirm there when the last 200 arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from procs import free_port, py_spy, tree_cpu  # noqa: E402
from stores import database  # noqa: E402

from live.embedded_redis import EmbeddedRedis  # noqa: E402


@contextmanager
def old_tree(ref: str, durable_ok: bool = False) -> Any:
    path = Path(tempfile.mkdtemp(prefix="livecart-old-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), ref],
                   check=True)
    try:
        if not durable_ok:
            assert not (path / "live" / "confirming.py").exists(), f"{ref} has the durable path"
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                       check=False)


@contextmanager
def service(tree: Path, redis_url: str, db_url: str, workdir: Path) -> Any:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    env.update(
        PYTHONPATH=str(tree), LIVE_REDIS_URL=redis_url, LIVE_DATABASE_URL=db_url,
        LIVE_SECRET="bench-" + secrets.token_hex(8), LIVE_LOG_LEVEL="info",
        LIVE_BUY_RATE_PER_S="0", LIVE_SIGNUP_PER_MIN="0", LIVE_DATA_DIR=str(workdir / "data"),
    )
    log_path = workdir / f"serve-{port}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "live.cli", "serve", "--port", str(port)],
        cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text())
            time.sleep(0.1)
        yield base, log_path, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


class Connection:
    """One viewer's keep-alive HTTP/1.1 connection, written by hand: httpx's pool slows
    down with thousands of connections (it scans them per request), which would measure
    the client rather than the service."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, token: str) -> tuple[int, dict[str, str], bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}"
            f"\r\nContent-Length: 0\r\n\r\n".encode()
        )
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed by the server")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def burst(
    base: str, n: int, server: psutil.Process, profile: Path | None = None
) -> dict[str, Any]:
    """Reserve `n` units for `n` viewers, then confirm all at once, each on its own
    connection; a 503 `try_again` is retried after its Retry-After, as a client would.
    Returns each confirm's latency (s) until its 200, the wall time, retries, failures."""
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as api:
        r = await api.post("/api/streams", json={"title": "bench", "host_name": "Ann"})
        sid, host = r.json()["id"], {"Authorization": f"Bearer {r.json()['host_token']}"}
        r = await api.post(f"/api/streams/{sid}/products", headers=host, json={
            "sku": "drop", "title": "drop", "price_cents": 1999, "stock": n})
        assert r.status_code == 201, r.text

        async def prepare(i: int) -> tuple[str, str]:
            r = await api.post("/api/viewers", json={"name": f"v{i}"})
            token = r.json()["token"]
            r = await api.post(f"/api/streams/{sid}/reservations", json={
                "sku": "drop", "qty": 1, "key": "k"}, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 201, r.text
            return r.json()["id"], token

        held = await asyncio.gather(*(prepare(i) for i in range(n)))
    url = httpx.URL(base)
    conns = [Connection(url.host, url.port or 80) for _ in held]
    # Every viewer's connection is open before the burst (viewers on the page already
    # are), so the burst measures the confirms, not n TCP handshakes.
    await asyncio.gather(*(c.open() for c in conns))
    retries = 0
    failures: dict[str, int] = {}
    spy = None
    if profile is not None:
        # py-spy on the service for the burst (and the drain after it): collapsed stacks.
        spy = py_spy(server.pid, profile, 1000)  # once, before the burst is timed
        await asyncio.sleep(1.0)
    cpu0 = tree_cpu(server.pid)
    start = time.perf_counter()

    async def confirm(conn: Connection, rid: str, token: str) -> float | None:
        nonlocal retries
        while True:
            status, headers, body = await conn.post(f"/api/reservations/{rid}/confirm", token)
            if status == 200:
                return time.perf_counter() - start
            if status == 503 and b"try_again" in body:
                retries += 1
                await asyncio.sleep(float(headers.get("retry-after", "1")))
                continue
            why = f"{status} {body[:80].decode(errors='replace')}"
            failures[why] = failures.get(why, 0) + 1
            return None

    pairs = zip(conns, held, strict=True)
    results = await asyncio.gather(*(confirm(c, rid, t) for c, (rid, t) in pairs))
    wall = time.perf_counter() - start
    cpu = tree_cpu(server.pid) - cpu0
    for c in conns:
        c.close()
    latencies = [t for t in results if t is not None]
    return {"latencies": latencies, "wall": wall, "retries": retries, "failures": failures,
            "cpu": cpu, "cpu0": cpu0, "spy": spy}


async def paid_in_sql(db_url: str) -> int:
    from sqlalchemy import func, select

    from orders.db import make_engine
    from orders.models import PAID, OrderRow

    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            q = select(func.count()).select_from(OrderRow).where(OrderRow.status == PAID)
            return int((await conn.execute(q)).scalar_one())
    finally:
        await engine.dispose()


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1] * 1000


def run_one(
    tree: Path, kind: str, n: int, workdir: Path, profile: Path | None = None
) -> dict[str, Any]:
    with EmbeddedRedis() as redis, database(kind, workdir) as db_url:
        with service(tree, redis.url, db_url, workdir) as (base, log_path, server):
            b = asyncio.run(burst(base, n, server, profile))
            paid = asyncio.run(paid_in_sql(db_url))  # the moment the last answer came back
            # Until every confirm is a paid row (the old path's drainer writes them after
            # the last answer): the CPU of a confirm includes its row either way.
            deadline = time.monotonic() + 60
            while asyncio.run(paid_in_sql(db_url)) < len(b["latencies"]):
                assert time.monotonic() < deadline, "the paid rows never reached SQL"
                time.sleep(0.05)
            time.sleep(0.5)  # the drainer's pass over the last events (already rows)
            cpu_all = tree_cpu(server.pid) - b["cpu0"]
            if b["spy"] is not None:
                b["spy"].send_signal(signal.SIGINT)
                b["spy"].wait(30)
        # The durable path logs its group commit at shutdown (rows in transactions).
        lines = log_path.read_text().splitlines()
        commits = [ln.split("confirms ", 1)[1] for ln in lines if "confirms committed" in ln]
        for ln in [ln for ln in lines if " WARNING " in ln or " ERROR " in ln][:3]:
            print("  service log:", ln[:300])
    lat = b["latencies"]
    return {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat) * 1000,
            "wall": b["wall"], "ok": len(lat), "retries": b["retries"], "paid": paid,
            "commits": commits[0] if commits else "-", "failures": b["failures"],
            "cpu_ms": b["cpu"] * 1000 / n, "cpu_all_ms": cpu_all * 1000 / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--confirms", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2, help="old/new alternations per store")
    ap.add_argument("--old-ref", default="48046d0", help="commit of the old confirm path")
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--old-durable", action="store_true",
                    help="--old-ref has the durable confirm too (before/after another change)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="py-spy each service during its burst: DIR/<store>-<round>-<name>.txt")
    args = ap.parse_args()
    with old_tree(args.old_ref, args.old_durable) as old, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for kind in args.stores.split(","):
            for rnd in range(1, args.rounds + 1):
                for name, tree in (("old", old), ("new", ROOT)):
                    spy = args.profile / f"{kind}-{rnd}-{name}.txt" if args.profile else None
                    r = run_one(tree, kind, args.confirms, workdir, spy)
                    print(
                        f"{kind:10} round {rnd} {name}: {r['ok']}/{args.confirms} confirms 200 "
                        f"({r['retries']} retried after 503), "
                        f"p50 {r['p50']:7.1f} ms  p99 {r['p99']:7.1f} ms  max {r['max']:7.1f} ms"
                        f"  wall {r['wall']:5.2f} s  service CPU {r['cpu_ms']:.2f} ms/confirm"
                        f" ({r['cpu_all_ms']:.2f} until every row is in SQL)"
                        f"  paid rows in SQL at the last answer "
                        f"{r['paid']}; {r['commits']}"
                        + (f"; failed: {r['failures']}" if r["failures"] else ""), flush=True,
                    )


if __name__ == "__main__":
    main()
