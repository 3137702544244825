"""Server CPU per buy: `live serve --workers 2` against a bare endpoint, HTTP and websocket.

    .venv/bin/python bench/buy.py [--requests 20000] [--connections 50] [--clients 2]
        [--rounds 2] [--modes http,ws] [--no-drain] [--store sqlite|postgresql]

Starts, each in a process session of its own (kernel autogroup): a private valkey
(the embedded server's binary), the anchor (bench/bare_buy.py on uvicorn, 2 workers:
token check, JSON body, one EVALSHA of the real reserve.lua per buy) and `live serve
--workers 2` (in-process drainer into a temporary SQLite file, or with `--store
postgresql` a fresh PostgreSQL database; none with --no-drain). Both serve
buys of one endless sku, each on a stream of its own (the anchor's is not registered,
so live's drainer never sees its events). The load is `--clients` aiohttp processes,
also in sessions of their own, with `--connections` keep-alive connections (websockets)
in all, each with its own viewer token, sending `--requests` buys in all, one at a time
per connection, every buy a new idempotency key.

Server CPU is utime+stime of the server's process tree (supervisor and workers, read
from /proc) from the moment every client is connected and warmed up to the end of the
load, and for live until its drainer has committed every event of the phase (that work
is part of a buy). Redis' CPU is shown apart (the same script runs on both), and so is
PostgreSQL's (every postgres process on the machine) with `--store postgresql`: SQLite
runs inside live's processes, so its SQL engine's work counts in live's figure. Targets
alternate per round, so drifting machine load hits both alike; the ratios live/anchor
are within one round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from procs import (  # noqa: E402
    free_port,
    proc_cpu,
    py_spy,
    spawn,
    stop,
    tree,
    tree_cpu,
    wait_http,
)
from stores import database, sql_server_cpu  # noqa: E402

# --- load client (runs in its own process: `buy.py --client`) -----------------------------


async def client_main(cfg: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    tokens: list[str] = cfg["tokens"]
    counter = iter(range(cfg["requests"]))
    prefix = cfg["prefix"]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    go = asyncio.Event()
    ready = 0
    loop = asyncio.get_running_loop()

    def body(i: int) -> dict[str, Any]:
        return {"sku": "B", "qty": 1, "key": f"{prefix}{i}"}

    def signal_ready() -> None:
        nonlocal ready
        ready += 1
        if ready == len(tokens):
            print("ready", flush=True)
            # stdin's "go" line sets the event (read in a thread: stdin is a pipe).
            loop.run_in_executor(None, sys.stdin.readline).add_done_callback(
                lambda _: loop.call_soon_threadsafe(go.set))

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=len(tokens) * 2)
    ) as session:
        if cfg["mode"] == "http":
            async def conn_task(token: str, n: int) -> None:
                headers = {"Authorization": f"Bearer {token}"}
                for w in range(3):  # warm-up: the connection is open and used
                    async with session.post(cfg["url"], json=body(-(n * 10 + w) - 1),
                                            headers=headers) as r:
                        await r.read()
                signal_ready()
                await go.wait()
                for i in counter:
                    t = time.perf_counter()
                    async with session.post(cfg["url"], json=body(i), headers=headers) as r:
                        await r.read()
                        if r.status != 201:
                            errors[str(r.status)] = errors.get(str(r.status), 0) + 1
                    latencies.append(time.perf_counter() - t)
        else:
            async def conn_task(token: str, n: int) -> None:
                async with session.ws_connect(f"{cfg['url']}?token={token}",
                                              max_msg_size=0) as ws:

                    async def one(i: int) -> str:
                        await ws.send_str(json.dumps({"type": "buy", **body(i)}))
                        while True:
                            msg = json.loads((await ws.receive()).data)
                            if msg["type"] == "reservation":
                                return "ok"
                            if msg["type"] == "error":
                                return msg["data"].get("code", "error")

                    for w in range(3):
                        await one(-(n * 10 + w) - 1)
                    signal_ready()
                    await go.wait()
                    for i in counter:
                        t = time.perf_counter()
                        outcome = await one(i)
                        if outcome != "ok":
                            errors[outcome] = errors.get(outcome, 0) + 1
                        latencies.append(time.perf_counter() - t)

        t0 = 0.0

        async def timed() -> None:
            nonlocal t0
            await go.wait()
            t0 = time.perf_counter()

        timer = asyncio.create_task(timed())
        await asyncio.gather(*(conn_task(t, n) for n, t in enumerate(tokens)))
        await timer
        elapsed = time.perf_counter() - t0
    return {"n": len(latencies), "elapsed": elapsed, "latencies": latencies, "errors": errors}


def client_entry() -> None:
    cfg = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(client_main(cfg))), flush=True)


# --- the servers -----------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="bench-buy-"))
        self.secret = "bench-" + secrets.token_hex(8)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
        self.env["PYTHONPATH"] = str(ROOT)
        self.stack = contextlib.ExitStack()

    def start(self) -> None:
        from live.embedded_redis import answers_ping, server_binary

        rport = free_port()
        self.redis = spawn([server_binary(), "--bind", "127.0.0.1", "--port", str(rport),
                            "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                            "--maxclients", "10000"], self.env, self.dir / "redis.log")
        self.procs.append(self.redis)
        self.redis_url = f"redis://127.0.0.1:{rport}/0"
        while not answers_ping(rport):
            time.sleep(0.05)
        lport, aport = free_port(), free_port()
        live_env = {**self.env, "LIVE_REDIS_URL": self.redis_url, "LIVE_SECRET": self.secret,
                    "LIVE_DATABASE_URL": self.stack.enter_context(
                        database(self.args.store, self.dir)),
                    "LIVE_SIGNUP_PER_MIN": "0", "LIVE_BUY_RATE_PER_S": "0",
                    "LIVE_LOG_LEVEL": "warning",
                    **dict(kv.split("=", 1) for kv in self.args.set)}
        cmd = [sys.executable, "-m", "live.cli", "serve", "--port", str(lport), "--workers", "2"]
        if self.args.no_drain:
            cmd.append("--no-drain")
        self.live = spawn(cmd, live_env, self.dir / "live.log")
        self.procs.append(self.live)
        bare_env = {**self.env, "BARE_SECRET": self.secret, "BARE_REDIS_URL": self.redis_url}
        self.bare = spawn([sys.executable, "-m", "uvicorn", "bench.bare_buy:app", "--port",
                           str(aport), "--workers", "2", "--log-level", "warning",
                           "--no-access-log", "--app-dir", str(ROOT)],
                          bare_env, self.dir / "bare.log")
        self.procs.append(self.bare)
        self.live_base, self.bare_base = f"127.0.0.1:{lport}", f"127.0.0.1:{aport}"
        wait_http(f"http://{self.live_base}/healthz")
        wait_http(f"http://{self.bare_base}/nothing")
        self.setup()

    def setup(self) -> None:
        import httpx
        from redis import Redis

        from inventory import keys

        with httpx.Client(base_url=f"http://{self.live_base}", timeout=30) as c:
            stream = c.post("/api/streams", json={"title": "bench", "host_name": "b"}).json()
            c.post(f"/api/streams/{stream['id']}/products",
                   json={"sku": "B", "title": "Bench", "price_cents": 100, "stock": 10_000_000},
                   headers={"Authorization": f"Bearer {stream['host_token']}"}
                   ).raise_for_status()
            self.tokens = [c.post("/api/viewers", json={"name": f"b{i}"}).json()["token"]
                           for i in range(self.args.connections)]
        self.live_sid = stream["id"]
        # The anchor's stream: the same product and records, but not in the registry.
        self.bare_sid = f"s_{secrets.token_hex(8)}"
        r = Redis.from_url(self.redis_url)
        for name in ("products", "stock", "checked"):
            src = getattr(keys, name)(self.live_sid)
            dst = getattr(keys, name)(self.bare_sid)
            r.restore(dst, 0, r.dump(src), replace=True)
        product = json.loads(r.hget(keys.products(self.bare_sid), "B"))
        product["stream_id"] = self.bare_sid
        r.hset(keys.products(self.bare_sid), "B", json.dumps(product))
        r.close()

    def drained(self) -> None:
        """Wait until live's drainers committed every event (lag and pending 0)."""
        if self.args.no_drain:
            return
        from redis import Redis

        from inventory import keys

        r = Redis.from_url(self.redis_url, decode_responses=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            groups = r.xinfo_groups(keys.events(self.live_sid))
            if groups and all(g["pending"] == 0 and (g.get("lag") or 0) == 0 for g in groups):
                break
            time.sleep(0.05)
        r.close()

    def commands(self) -> dict[str, int]:
        """Redis' count of calls per command (INFO commandstats)."""
        from redis import Redis

        r = Redis.from_url(self.redis_url)
        stats = r.info("commandstats")
        r.close()
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}

    def phase(self, target: str, mode: str, tag: str) -> dict[str, Any]:
        a = self.args
        if target == "live":
            root, sid, host = self.live.pid, self.live_sid, self.live_base
            url = (f"http://{host}/api/streams/{sid}/reservations" if mode == "http"
                   else f"ws://{host}/ws/streams/{sid}")
        else:
            root, sid, host = self.bare.pid, self.bare_sid, self.bare_base
            url = f"http://{host}/buy/{sid}" if mode == "http" else f"ws://{host}/ws/{sid}"
        self.drained()
        clients = []
        per = [a.requests // a.clients + (i < a.requests % a.clients) for i in range(a.clients)]
        for i in range(a.clients):
            p = subprocess.Popen([sys.executable, __file__, "--client"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, env=self.env, start_new_session=True)
            cfg = {"mode": mode, "url": url, "requests": per[i], "prefix": f"{tag}c{i}k",
                   "tokens": self.tokens[i :: a.clients]}
            assert p.stdin and p.stdout
            p.stdin.write((json.dumps(cfg) + "\n").encode())
            p.stdin.flush()
            clients.append(p)
        for p in clients:
            assert p.stdout and p.stdout.readline().strip() == b"ready", "client failed"
        spies = []
        if a.profile and target == "live":
            # py-spy on each worker (collapsed stacks, one file per phase and worker).
            for pid in tree(root)[1:]:
                spies.append(py_spy(pid, Path(a.profile) / f"{tag}-{pid}.txt", 200))
            time.sleep(1.0)
        calls0 = self.commands()
        cpu0, rcpu0, t0 = tree_cpu(root), proc_cpu(self.redis.pid), time.perf_counter()
        scpu0 = sql_server_cpu()
        for p in clients:
            assert p.stdin
            p.stdin.write(b"go\n")
            p.stdin.flush()
        results = [json.loads(p.communicate()[0]) for p in clients]
        load_s = time.perf_counter() - t0
        if target == "live":
            self.drained()
        cpu1, rcpu1, scpu1 = tree_cpu(root), proc_cpu(self.redis.pid), sql_server_cpu()
        calls1 = self.commands()
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        n = sum(r["n"] for r in results)
        lat = sorted(x for r in results for x in r["latencies"])
        q = statistics.quantiles(lat, n=100)
        errors: dict[str, int] = {}
        for r in results:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        # Commands sent by the server (ours: INFO, XINFO; the drainer's XREADGROUP polls).
        calls = {k: (v - calls0.get(k, 0)) / n for k, v in calls1.items()
                 if k not in ("info", "xinfo|groups") and v - calls0.get(k, 0) > 0}
        return {"target": target, "mode": mode, "n": n, "calls": calls,
                "cpu_ms": (cpu1 - cpu0) / n * 1000,
                "redis_ms": (rcpu1 - rcpu0) / n * 1000,
                "sql_ms": (scpu1 - scpu0) / n * 1000,
                "rate": n / max(r["elapsed"] for r in results), "load_s": load_s,
                "p50": q[49] * 1000, "p99": q[98] * 1000, "errors": errors}

    def close(self) -> None:
        for p in reversed(self.procs):
            stop(p)
        self.stack.close()  # the PostgreSQL database goes once live is stopped


def show(row: dict[str, Any]) -> str:
    errs = f"  errors {row['errors']}" if row["errors"] else ""
    return (f"{row['mode']:4} {row['target']:6} {row['cpu_ms']:6.3f} ms CPU/buy  "
            f"redis {row['redis_ms']:5.3f} ms  "
            + (f"postgresql {row['sql_ms']:5.3f} ms  " if row["sql_ms"] > 0 else "")
            + f"{row['rate']:7.0f} buys/s  "
            f"p50 {row['p50']:6.1f} ms  p99 {row['p99']:6.1f} ms{errs}\n"
            f"      Redis commands per buy {sum(row['calls'].values()):.2f}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in
                        sorted(row["calls"].items(), key=lambda kv: -kv[1]) if v >= 0.01))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--modes", default="http,ws")
    p.add_argument("--no-drain", action="store_true", help="live serve --no-drain")
    p.add_argument("--set", action="append", default=[], metavar="LIVE_X=VALUE",
                   help="a setting of live serve (repeatable), e.g. LIVE_DRAIN_BATCH=100")
    p.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                   help="live's order store: a temporary SQLite file (in live's processes, "
                   "so in its CPU) or a fresh PostgreSQL database (LIVE_BENCH_PG_URL; "
                   "its server's CPU shown apart, like Redis')")
    p.add_argument("--profile", metavar="DIR",
                   help="py-spy each live worker during its phases (collapsed stacks in DIR; "
                   "the sampling's own cost is then in live's figures)")
    args = p.parse_args()
    bench = Bench(args)
    try:
        bench.start()
        drain = "--no-drain" if args.no_drain else f"with its drainer into {args.store}"
        print(f"buy: {args.requests} buys per phase, {args.connections} connections, "
              f"{args.clients} client processes, live {drain}; "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        ratios: dict[str, list[float]] = {}
        for rnd in range(args.rounds):
            for mode in args.modes.split(","):
                rows = {}
                for target in ("bare", "live"):
                    rows[target] = bench.phase(target, mode, f"r{rnd}{mode}{target}")
                    print(f"round {rnd + 1} {show(rows[target])}", flush=True)
                ratio = rows["live"]["cpu_ms"] / rows["bare"]["cpu_ms"]
                ratios.setdefault(mode, []).append(ratio)
                print(f"round {rnd + 1} {mode:4} live/bare CPU per buy {ratio:.2f}x  "
                      f"throughput {rows['live']['rate'] / rows['bare']['rate']:.2f}x  "
                      f"(load average {os.getloadavg()[0]:.1f})", flush=True)
        for mode, rs in ratios.items():
            print(f"{mode}: live/bare CPU per buy {min(rs):.2f}x-{max(rs):.2f}x over "
                  f"{len(rs)} rounds")
    finally:
        bench.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        client_entry()
    else:
        main()
