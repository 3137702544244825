"""Websocket fan-out: the real service against a raw baseline server, in the same run.

    .venv/bin/python bench/fanout.py [--viewers 1000] [--messages 100] [--rate 20]
        [--clients 3]

Starts a private embedded Redis, `live serve --no-drain` and a baseline server (uvloop,
websockets sans-I/O handshake, then one pre-framed bytes object written to every
transport per broadcast). `--clients` processes open N viewers (aiohttp websocket
clients) to one stream of each server in turn; the host publishes M ~110-byte messages
at a fixed rate (the service: `POST /api/streams/{id}/messages`; the baseline: a command
over a pipe). Reports, per server: CPU µs per delivered message (user+system of the
server process across the broadcast phase), delivered/expected, p50/p99 delivery latency
(from the send timestamp in the message), RSS per idle connection; then service/raw.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402

from live.embedded_redis import EmbeddedRedis  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from rawserver import PAD, raw_server  # noqa: E402

# ---------------------------------------------------------------- viewer processes


def viewer_process(url: str, n: int, kind: str, expected: int, ctl: Connection) -> None:
    """Open n websockets; report when connected; collect latencies until told to stop."""
    import aiohttp
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        lat = array("d")
        got = [0]
        failed = [0]
        stop = asyncio.Event()
        all_done = asyncio.Event()
        finished = [0]
        wanted = "host.message" if kind == "service" else "bench"
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        # a handshake not answered in 60 s counts as a failed viewer (reported, not awaited)
        session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=60)
        )
        sem = asyncio.Semaphore(50)
        connected = [0]
        ready = asyncio.Event()

        async def viewer() -> None:
            try:
                async with sem:
                    ws = await session.ws_connect(
                        url,
                        protocols=("live.json",),
                        autoping=True,
                        compress=0,
                        max_msg_size=1 << 20,
                        timeout=aiohttp.ClientWSTimeout(ws_close=2),
                    )
            except Exception:
                failed[0] += 1
                connected[0] += 1
                if connected[0] == n:
                    ready.set()
                return
            connected[0] += 1
            if connected[0] == n:
                ready.set()
            mine = 0
            try:
                async for m in ws:
                    if m.type != aiohttp.WSMsgType.TEXT:
                        continue
                    now = time.time() * 1000.0
                    d = orjson.loads(m.data)
                    if d.get("type") != wanted:
                        continue
                    lat.append(now - d["ts"])
                    mine += 1
                    got[0] += 1
                    if mine == expected:
                        finished[0] += 1
                        if finished[0] == n - failed[0]:
                            all_done.set()
                        break
            except Exception:
                pass
            await stop.wait()
            await ws.close()

        tasks = [asyncio.create_task(viewer()) for _ in range(n)]
        await ready.wait()
        ctl.send(("connected", n - failed[0]))
        # wait for "stop" from the driver (it knows when the broadcast is over)
        await loop.run_in_executor(None, ctl.recv)
        stop.set()
        ctl.send(("result", got[0], lat.tobytes()))
        await asyncio.wait(tasks, timeout=5)
        await session.close()

    uvloop.run(main())


# ---------------------------------------------------------------- driver


def cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        t = p.cpu_times()
        total += t.user + t.system
    return total


def rss(procs: list[psutil.Process]) -> int:
    return sum(p.memory_info().rss for p in procs)


def collect(pipes: list[Connection], procs: list[Any]) -> tuple[int, list[float]]:
    """Stop the viewer processes: messages they counted, and the percentiles (1..99) of
    the latencies they took."""
    got, lat = 0, array("d")
    for a in pipes:
        a.send("stop")
    for a in pipes:
        _, g, raw = a.recv()
        got += g
        lat.frombytes(raw)
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("nan")] * 99
    return got, q


def run_viewers(
    url: str,
    kind: str,
    viewers: int,
    clients: int,
    messages: int,
    rate: float,
    server: list[psutil.Process],
    publish: Callable[[int], None],
) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    per = [viewers // clients + (1 if i < viewers % clients else 0) for i in range(clients)]
    time.sleep(0.5)
    rss0 = rss(server)
    pipes, procs = [], []
    for n in per:
        a, b = ctx.Pipe()
        p = ctx.Process(target=viewer_process, args=(url, n, kind, messages, b), daemon=True)
        p.start()
        pipes.append(a)
        procs.append(p)
    ok = 0
    for a in pipes:
        if not a.poll(180):
            raise SystemExit(f"{kind}: viewers did not connect in 180 s")
        ok += a.recv()[1]
    time.sleep(1.5)  # let hellos, first viewer counts and allocator settle
    rss1 = rss(server)
    cpu0 = cpu(server)
    t0 = time.perf_counter()
    for i in range(messages):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        publish(i)
    send_s = time.perf_counter() - t0
    time.sleep(max(2.0, 0.2 * messages / rate))  # drain what is in flight
    cpu1 = cpu(server)
    got, q = collect(pipes, procs)
    return {
        "connected": ok,
        "expected": ok * messages,
        "delivered": got,
        "cpu_us": (cpu1 - cpu0) * 1e6 / max(got, 1),
        "p50": q[49],
        "p99": q[98],
        "kib_per_conn": (rss1 - rss0) / 1024 / max(ok, 1),
        "send_s": send_s,
    }


def service_run(redis_url: str, args: argparse.Namespace) -> dict[str, float]:
    port = 20000 + secrets.randbelow(5000)
    db = tempfile.NamedTemporaryFile(suffix=".db", delete=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    env.update(
        LIVE_REDIS_URL=redis_url,
        LIVE_DATABASE_URL=f"sqlite+aiosqlite:///{db.name}",
        LIVE_SECRET="bench-" + secrets.token_hex(8),
        LIVE_SIGNUP_PER_MIN="0",  # thousands of viewers from one address
        LIVE_LOG_LEVEL="warning",
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/live"), "serve", "--port", str(port), "--no-drain"],
        env=env,
        cwd="/tmp",
        stdout=subprocess.DEVNULL,
        stderr=open(args.server_log, "ab") if args.server_log else subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        http = httpx.Client(base_url=base, timeout=30)
        for _ in range(300):
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        stream = http.post("/api/streams", json={"title": "fanout", "host_name": "b"}).json()
        sid = stream["id"]
        auth = {"Authorization": f"Bearer {stream['host_token']}"}
        server = [psutil.Process(proc.pid)]

        def publish(i: int) -> None:
            r = http.post(
                f"/api/streams/{sid}/messages", json={"text": f"m{i:06d} {PAD}"}, headers=auth
            )
            r.raise_for_status()

        return run_viewers(
            f"ws://127.0.0.1:{port}/ws/streams/{sid}",
            "service",
            args.viewers,
            args.clients,
            args.messages,
            args.rate,
            server,
            publish,
        )
    finally:
        proc.terminate()
        proc.wait(10)
        os.unlink(db.name)


def baseline_run(args: argparse.Namespace) -> dict[str, float]:
    with raw_server() as (port, pid, publish):
        return run_viewers(
            f"ws://127.0.0.1:{port}/",
            "baseline",
            args.viewers,
            args.clients,
            args.messages,
            args.rate,
            [psutil.Process(pid)],
            publish,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--viewers", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--rate", type=float, default=20.0, help="messages per second")
    ap.add_argument("--clients", type=int, default=3, help="viewer processes")
    ap.add_argument("--server-log", help="append the service's stderr (its log) to this file")
    args = ap.parse_args()
    embedded = EmbeddedRedis()
    url = embedded.start()
    try:
        raw = baseline_run(args)
        print("raw:", {k: round(v, 2) for k, v in raw.items()}, flush=True)
        svc = service_run(url, args)
    finally:
        embedded.stop()
    print(
        f"fan-out: {args.viewers} viewers x {args.messages} messages at {args.rate:g}/s, "
        f"{args.clients} client processes"
    )
    hdr = (
        f"{'':10} {'CPU us/deliv':>12} {'delivered/expected':>22} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'KiB/idle conn':>14} {'send s':>7}"
    )
    print(hdr)
    for name, r in (("raw", raw), ("service", svc)):
        print(
            f"{name:10} {r['cpu_us']:12.2f} "
            f"{r['delivered']:>11}/{r['expected']:<10} {r['p50']:8.1f} {r['p99']:8.1f} "
            f"{r['kib_per_conn']:14.1f} {r['send_s']:7.1f}"
            f"  connected {r['connected']}/{args.viewers}"
        )
    print(
        f"{'ratio':10} {svc['cpu_us'] / raw['cpu_us']:12.2f} "
        f"{'':22} {svc['p50'] / raw['p50']:8.2f} {svc['p99'] / raw['p99']:8.2f} "
        f"{svc['kib_per_conn'] / max(raw['kib_per_conn'], 0.001):14.2f}"
    )


if __name__ == "__main__":
    main()
