"""Group-buy joins beside plain reservations, on the same Redis in the same run.

    .venv/bin/python bench/groups.py [--joins 49000] [--concurrency 50]
        [--http-joins 4900] [--redis-url URL]

Without --redis-url a private embedded Redis is started (nothing shared is touched).
Two paths, each measured for both operations one after the other:

- script: the inventory layer (`Groups.join` → group_join.lua, one call per join) against
  `Reservations.reserve` → reserve.lua one call per reservation (the like-for-like
  figure) and in the service's batched mode (what a flash sale of plain buys gets);
- HTTP: `POST /api/groups/{id}/join` against `POST /api/streams/{id}/reservations` end
  to end through one `live serve --no-drain` process, with p50/p99.

Groups have 50 members (the maximum): `--concurrency` viewers each join every group
once, so a join always finds a free slot and the work is all in the join itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from inventory.catalog import Catalog, Product  # noqa: E402
from inventory.groups import Groups  # noqa: E402
from inventory.reservations import Reservations  # noqa: E402
from live.embedded_redis import EmbeddedRedis  # noqa: E402

SIZE = 50
BIG = 10**9


async def run_tasks(n_tasks: int, work: Callable[[int], Awaitable[int]]) -> tuple[float, int]:
    """Run `work(task_no)` in `n_tasks` tasks; (seconds, operations done)."""
    t0 = time.perf_counter()
    done = await asyncio.gather(*(work(i) for i in range(n_tasks)))
    return time.perf_counter() - t0, sum(done)


async def script_path(url: str, joins: int, c: int) -> dict[str, float]:
    redis = Redis.from_url(url, decode_responses=True, max_connections=c + 10)
    sid = f"s_{secrets.token_hex(8)}"
    await Catalog(redis).add(Product(sid, "B", "Bench", 100, BIG, None, 0))
    out: dict[str, float] = {}

    n_groups = max(1, joins // (SIZE - 1))
    per_task = n_groups * (SIZE - 1) // c
    for label, batch in (("reserve, one call each", False), ("reserve, batched", True)):
        res = Reservations(redis, 600, buys_per_window=0, batch=batch)

        async def buy(i: int, res: Reservations = res, prefix: str = "b" if batch else "o") -> int:
            for k in range(per_task):
                await res.reserve(sid, f"v{i}", "B", 1, f"{prefix}{k}")
            return per_task

        secs, n = await run_tasks(c, buy)
        out[label] = n / secs

    groups = Groups(redis, 600)
    gb = await groups.create_buy(sid, "B", 80, SIZE, 3600, None)
    t0 = time.perf_counter()
    opened = [(await groups.open(gb["id"], f"o{g}", "k")).group["id"] for g in range(n_groups)]
    out["open"] = n_groups / (time.perf_counter() - t0)

    async def join(i: int) -> int:
        order = opened[i:] + opened[:i]  # tasks start on different groups
        for gid in order:
            await groups.join(gid, f"j{i}", gid)  # one key per join (keys are per viewer)
        return len(order)

    secs, n = await run_tasks(min(c, SIZE - 1), join)
    out["join"] = n / secs
    await redis.aclose()
    return out


def start_service(url: str) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    port = 18000 + secrets.randbelow(2000)
    env.update(
        LIVE_REDIS_URL=url,
        LIVE_DATABASE_URL=f"sqlite+aiosqlite:////tmp/bench-groups-{port}.db",
        LIVE_SECRET="bench-" + secrets.token_hex(8),
        LIVE_BUY_RATE_PER_S="0",
        LIVE_LOG_LEVEL="warning",
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "live.cli", "serve", "--port", str(port), "--no-drain"],
        env=env,
        cwd="/tmp",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


async def http_path(base: str, joins: int, c: int) -> dict[str, tuple[float, float, float]]:
    import aiohttp  # a lighter client than httpx: the load generator shares the cores

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(300):
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        s = (await client.post("/api/streams", json={"title": "b", "host_name": "b"})).json()
        host = {"Authorization": f"Bearer {s['host_token']}"}
        r = await client.post(
            f"/api/streams/{s['id']}/products",
            headers=host,
            json={"sku": "B", "title": "B", "price_cents": 100, "stock": 10_000_000},
        )
        r.raise_for_status()
        r = await client.post(
            f"/api/streams/{s['id']}/group-buys",
            headers=host,
            json={"sku": "B", "group_price_cents": 80, "group_size": SIZE, "window_s": 3600},
        )
        gbid = r.json()["id"]
        auth = []
        for i in range(min(c, SIZE - 1)):
            v = (await client.post("/api/viewers", json={"name": f"b{i}"})).json()
            auth.append({"Authorization": f"Bearer {v['token']}"})
        opener = (await client.post("/api/viewers", json={"name": "o"})).json()
        n_groups = max(1, joins // len(auth))
        gids = []
        for g in range(n_groups):
            r = await client.post(
                f"/api/group-buys/{gbid}/groups",
                json={"key": f"g{g}"},
                headers={"Authorization": f"Bearer {opener['token']}"},
            )
            gids.append(r.json()["group_id"])

    out = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(auth))) as http:
        for label in ("reservation", "join"):
            latencies: list[float] = []

            async def task(i: int, label: str = label, latencies: list[float] = latencies) -> int:
                order = gids[i:] + gids[:i]
                for k, gid in enumerate(order):
                    if label == "join":
                        path, body = f"{base}/api/groups/{gid}/join", {"key": f"j{k}"}
                    else:
                        path = f"{base}/api/streams/{s['id']}/reservations"
                        body = {"sku": "B", "qty": 1, "key": f"r{k}"}
                    t = time.perf_counter()
                    async with http.post(path, json=body, headers=auth[i]) as r:
                        await r.read()
                        assert r.status == 201, (label, r.status, await r.text())
                    latencies.append(time.perf_counter() - t)
                return len(order)

            secs, n = await run_tasks(len(auth), task)
            q = statistics.quantiles(latencies, n=100)
            out[label] = (n / secs, q[49] * 1000, q[98] * 1000)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--joins", type=int, default=49_000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--http-joins", type=int, default=4_900)
    p.add_argument("--redis-url")
    args = p.parse_args()
    with EmbeddedRedis() if not args.redis_url else _Given(args.redis_url) as server:
        url = server.url
        print(f"redis {url}, load average {os.getloadavg()[0]:.2f} at start")
        s = asyncio.run(script_path(url, args.joins, args.concurrency))
        one = s["reserve, one call each"]
        print(
            f"script  reserve.lua, one call per reservation  -c {args.concurrency}: {one:9.0f} /s"
        )
        print(
            f"script  reserve.lua, batched (service path)    -c {args.concurrency}: "
            f"{s['reserve, batched']:9.0f} /s"
        )
        print(
            f"script  group_join.lua, one call per join      -c {min(args.concurrency, 49)}: "
            f"{s['join']:9.0f} /s  ({s['join'] / one:.2f}x one-call reservations)"
        )
        print(f"script  group_open.lua (sequential)            -c 1: {s['open']:9.0f} /s")
        if args.http_joins:
            proc, base = start_service(url)
            try:
                h = asyncio.run(http_path(base, args.http_joins, args.concurrency))
            finally:
                proc.terminate()
                proc.wait(10)
            for label, (rate, p50, p99) in h.items():
                path = (
                    "POST /api/groups/{id}/join"
                    if label == "join"
                    else "POST /api/streams/{id}/reservations"
                )
                print(f"HTTP    {path:38s} : {rate:9.0f} /s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
            print(f"HTTP    joins / reservations: {h['join'][0] / h['reservation'][0]:.2f}x")
        print(f"load average {os.getloadavg()[0]:.2f} at the end")


class _Given:
    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> _Given:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
