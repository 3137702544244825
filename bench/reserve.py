"""Reservation throughput: the reserve Lua script through a pooled asyncio client and
the HTTP endpoint end to end, each beside redis-benchmark in the same run.

    .venv/bin/python bench/reserve.py [--requests 100000] [--concurrency 50]
        [--procs 2] [--http-requests 5000] [--redis-url URL]

Without --redis-url a private embedded Redis is started (nothing shared is touched).
Prints requests/s and two ratios at the same concurrency: to redis-benchmark calling the
same reserve.lua once per reservation (the equivalent EVAL: the goal is >= 0.8x of it),
and to redis-benchmark's EVAL of a 5-line check-and-decrement (the least a reservation
could cost); the HTTP path with p50/p99 latency.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from inventory import keys  # noqa: E402
from inventory.catalog import Catalog, Product  # noqa: E402
from inventory.reservations import RESERVE, Reservations  # noqa: E402
from live.embedded_redis import EmbeddedRedis  # noqa: E402

REDIS_BENCHMARK = "/usr/bin/redis-benchmark"
# The baseline of the issue: a 5-line check-and-decrement, the least a reservation does.
CHECK_AND_DECREMENT = (
    "local n = tonumber(redis.call('GET', KEYS[1]) or '0') "
    "if n < tonumber(ARGV[1]) then return 0 end "
    "redis.call('DECRBY', KEYS[1], ARGV[1]) "
    "return 1"
)
BIG = 10**12


def host_port(url: str) -> tuple[str, str]:
    m = re.match(r"redis://([^:/]+):(\d+)", url)
    assert m, url
    return m.group(1), m.group(2)


def redis_benchmark(url: str, n: int, c: int, *command: str) -> float:
    host, port = host_port(url)
    out = subprocess.run(
        [
            REDIS_BENCHMARK,
            "-h",
            host,
            "-p",
            port,
            "-n",
            str(n),
            "-c",
            str(c),
            "-q",
            "-r",
            "100000000",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    rates = re.findall(r"([\d.]+) requests per second", out.replace("\r", "\n"))
    return float(rates[-1])


async def setup_stream(url: str) -> tuple[str, str]:
    """A stream with a practically endless sku; returns its id and reserve.lua's sha."""
    redis = Redis.from_url(url, decode_responses=True)
    sid = f"s_{secrets.token_hex(8)}"
    await Catalog(redis).add(Product(sid, "B", "Bench", 100, BIG, None, 0))
    await redis.set(f"bench:{{{sid}}}:stock", BIG)
    sha = await redis.script_load(RESERVE.source)
    await redis.aclose()
    return sid, sha


def script_worker(url: str, sid: str, n: int, c: int, start: float, q: mp.Queue, mode: str) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def run() -> None:
        redis = Redis.from_url(url, decode_responses=True, max_connections=c)
        res = Reservations(redis, ttl_s=600, buys_per_window=0, batch=mode == "batched")
        decrement = redis.register_script(CHECK_AND_DECREMENT)
        counter_key = f"bench:{{{sid}}}:stock"
        await res.reserve(sid, "warm", "B", 1, secrets.token_hex(6))  # loads the scripts
        await decrement(keys=[counter_key], args=[1])
        prefix = secrets.token_hex(4)
        counter = iter(range(n))
        await asyncio.sleep(max(0.0, start - time.time()))  # all processes start together
        t0 = time.perf_counter()

        async def task() -> None:
            for i in counter:
                if mode == "trivial":  # the client's own ceiling: the 5-line script through it
                    await decrement(keys=[counter_key], args=[1])
                else:
                    await res.reserve(sid, f"v{prefix}{i}", "B", 1, "k")

        await asyncio.gather(*(task() for _ in range(c)))
        q.put((n, time.perf_counter() - t0))
        await redis.aclose()

    asyncio.run(run())


def script_path(url: str, sid: str, n: int, c: int, procs: int, mode: str = "pooled") -> float:
    q: mp.Queue = mp.Queue()
    start = time.time() + 1.0
    per = [c // procs + (1 if i < c % procs else 0) for i in range(procs)]
    workers = [
        mp.Process(target=script_worker, args=(url, sid, n // procs, per[i], start, q, mode))
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    results = [q.get(timeout=300) for _ in workers]
    for w in workers:
        w.join()
    return sum(r[0] for r in results) / max(r[1] for r in results)


def start_service(url: str) -> tuple[subprocess.Popen[bytes], int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    port = 18000 + secrets.randbelow(2000)
    env.update(
        LIVE_REDIS_URL=url,
        LIVE_DATABASE_URL="sqlite+aiosqlite:////tmp/bench-reserve.db",
        LIVE_SECRET="bench-" + secrets.token_hex(8),
        LIVE_SIGNUP_PER_MIN="0",  # thousands of viewers from one address
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
    return proc, port


def prepare_http(base: str, c: int) -> tuple[str, list[dict[str, str]]]:
    """Wait for the service; create a stream, an endless sku and `c` viewers."""
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(300):
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        stream = client.post("/api/streams", json={"title": "bench", "host_name": "b"}).json()
        r = client.post(
            f"/api/streams/{stream['id']}/products",
            json={"sku": "B", "title": "Bench", "price_cents": 100, "stock": 10_000_000},
            headers={"Authorization": f"Bearer {stream['host_token']}"},
        )
        r.raise_for_status()
        tokens = []
        for i in range(c):
            v = client.post("/api/viewers", json={"name": f"b{i}"}).json()
            tokens.append({"Authorization": f"Bearer {v['token']}"})
    return stream["id"], tokens


async def http_load(
    base: str, sid: str, tokens: list[dict[str, str]], n: int
) -> tuple[float, list[float]]:
    # aiohttp's client costs a fraction of httpx's per request, so the client process
    # does not become the bottleneck on a 2-core machine.
    import aiohttp

    path = f"{base}/api/streams/{sid}/reservations"
    latencies: list[float] = []
    counter = iter(range(n))
    connector = aiohttp.TCPConnector(limit=len(tokens))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def task(headers: dict[str, str]) -> None:
            for i in counter:
                t = time.perf_counter()
                body = {"sku": "B", "qty": 1, "key": f"k{i}"}
                async with session.post(path, json=body, headers=headers) as r:
                    await r.read()
                    assert r.status == 201, r.status
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(task(h) for h in tokens))
        return time.perf_counter() - t0, latencies


def http_path(url: str, n: int, c: int) -> tuple[float, float, float]:
    proc, port = start_service(url)
    base = f"http://127.0.0.1:{port}"
    try:
        sid, tokens = prepare_http(base, c)
        elapsed, latencies = asyncio.run(http_load(base, sid, tokens, n))
    finally:
        proc.terminate()
        proc.wait(10)
    q = statistics.quantiles(latencies, n=100)
    return n / elapsed, q[49] * 1000, q[98] * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--procs", type=int, default=2, help="client processes for the script path")
    p.add_argument("--http-requests", type=int, default=5000)
    p.add_argument("--redis-url")
    args = p.parse_args()
    embedded = None
    url = args.redis_url
    if url is None:
        embedded = EmbeddedRedis()
        url = embedded.start()
    try:
        n, c = args.requests, args.concurrency
        sid, sha = asyncio.run(setup_stream(url))
        base = redis_benchmark(
            url, n, c, "EVAL", CHECK_AND_DECREMENT, "1", f"bench:{{{sid}}}:stock", "1"
        )
        print(f"redis-benchmark EVAL check-and-decrement  -c {c}: {base:10.0f} /s")
        # The real reserve script run by redis-benchmark: the server's ceiling for it.
        ceiling = redis_benchmark(
            url,
            n,
            c,
            "EVALSHA",
            sha,
            str(len(keys.script_keys(sid)) + 2),
            *keys.script_keys(sid),
            f"live:{{{sid}}}:meta",  # not checked: the head's flag below is ""
            f"inv:{{{sid}}}:rate:x",
            "600000",
            "0",
            "1000",
            sid,
            "",
            f"rt:{{{sid}}}",
            "v__rand_int__",
            "B",
            "1",
            "k",
            "r___rand_int__",
            "",
            "",
            str(int(time.time() * 1000)),  # the caller's clock, as inventory.scripts.run adds
        )
        print(
            f"redis-benchmark EVALSHA reserve.lua       -c {c}: {ceiling:10.0f} /s"
            f"  ({ceiling / base:.2f}x 5-line EVAL)"
        )
        rate = script_path(url, sid, n, c, args.procs)
        print(
            f"reserve.lua, one call per reservation     -c {c} ({args.procs} procs): "
            f"{rate:10.0f} /s  ({rate / ceiling:.2f}x reserve.lua by redis-benchmark, "
            f"{rate / base:.2f}x 5-line EVAL)"
        )
        batched = script_path(url, sid, n, c, args.procs, mode="batched")
        print(
            f"reserve.lua, one run per loop turn's burst -c {c} ({args.procs} procs): "
            f"{batched:10.0f} /s  ({batched / ceiling:.2f}x reserve.lua by redis-benchmark, "
            f"{batched / base:.2f}x 5-line EVAL)  <- the service's path"
        )
        client = script_path(url, sid, n, c, args.procs, mode="trivial")
        print(
            f"5-line EVAL via redis-py asyncio pool    -c {c} ({args.procs} procs): "
            f"{client:10.0f} /s  ({client / base:.2f}x EVAL: the client's own ceiling)"
        )
        base2 = redis_benchmark(
            url, n, c, "EVAL", CHECK_AND_DECREMENT, "1", f"bench:{{{sid}}}:stock", "1"
        )
        print(f"redis-benchmark EVAL again (drift check)  -c {c}: {base2:10.0f} /s")
        hr, p50, p99 = http_path(url, args.http_requests, c)
        print(
            f"HTTP POST /reservations end to end        -c {c}: {hr:10.0f} /s"
            f"  p50 {p50:.1f} ms  p99 {p99:.1f} ms  ({hr / base:.3f}x EVAL)"
        )
    finally:
        if embedded is not None:
            embedded.stop()


if __name__ == "__main__":
    main()
