"""Server memory per idle websocket viewer: the service against the raw baseline.

    .venv/bin/python bench/idle.py [--viewers 5000] [--clients 2] [--kinds anon,token,raw]
        [--trace FILE]

For each kind, a fresh server: a private embedded Redis and `live serve --no-drain` (one
worker, its own process session) for `anon` (no token) and `token` (one viewer token
each, minted with the run's secret) viewers, or bench/fanout.py's raw baseline server
(uvloop, websockets handshake, then nothing kept but the transport) for `raw`. A warm-up
of 50 viewers comes and goes, then RSS is read, `--clients` processes (own sessions)
open N viewers that read their `hello` and stay idle (answering pings), and once the
server's RSS has settled: KiB per connection = (RSS after - RSS before) / N / 1024.

`--trace FILE` runs the service under tracemalloc (12 frames) and writes the top
allocation sites of the N connections (snapshot after minus before, by traceback) to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

WARMUP = 50


# ---------------------------------------------------------------- clients


def client_main(url: str, n: int, tokens: list[str], hello: bool) -> None:
    """Open n viewers (at most 100 handshakes at once); report; idle until stdin closes.
    A viewer counts once it has its `hello` (the raw server sends none: once upgraded)."""
    import uvloop
    from websockets.client import ClientProtocol
    from websockets.frames import Opcode
    from websockets.http11 import Response
    from websockets.uri import parse_uri

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))

    class Viewer(asyncio.Protocol):
        def __init__(self, target: str, done: asyncio.Future[bool]) -> None:
            self.ws = ClientProtocol(parse_uri(target), subprotocols=["live.json"])  # type: ignore[list-item]
            self.done = done
            self.t: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport  # type: ignore[assignment]
            self.ws.send_request(self.ws.connect())
            self.flush()

        def flush(self) -> None:
            assert self.t is not None
            for chunk in self.ws.data_to_send():
                if chunk:
                    self.t.write(chunk)

        def data_received(self, data: bytes) -> None:
            self.ws.receive_data(data)
            for ev in self.ws.events_received():
                if isinstance(ev, Response) and (ev.status_code != 101 or not hello):
                    self.finish(ev.status_code == 101)
                elif getattr(ev, "opcode", None) is Opcode.TEXT:
                    self.finish(True)  # the hello
            self.flush()  # pongs

        def finish(self, ok: bool) -> None:
            if not self.done.done():
                self.done.set_result(ok)

        def connection_lost(self, exc: Exception | None) -> None:
            self.finish(False)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        host, port = url.split("/")[2].split(":")
        sem = asyncio.Semaphore(100)
        keep: list[asyncio.BaseTransport] = []
        failed = 0

        async def one(i: int) -> None:
            nonlocal failed
            target = f"{url}?token={tokens[i]}" if tokens else url
            async with sem:
                done: asyncio.Future[bool] = loop.create_future()
                try:
                    t, _ = await loop.create_connection(
                        lambda: Viewer(target, done), host, int(port)
                    )
                    ok = await asyncio.wait_for(done, 60)
                except Exception:
                    ok = False
                    t = None
                if ok and t is not None:
                    keep.append(t)
                else:
                    failed += 1

        await asyncio.gather(*(one(i) for i in range(n)))
        print(json.dumps({"connected": len(keep), "failed": failed}), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # until the driver closes it
        for t in keep:
            t.abort()

    uvloop.run(main())


def open_viewers(
    url: str, n: int, clients: int, tokens: list[str]
) -> tuple[list[subprocess.Popen[str]], int]:
    hello = "/ws/streams/" in url
    per = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    procs, start = [], 0
    for k in per:
        cfg = json.dumps({"url": url, "n": k, "tokens": tokens[start : start + k],
                          "hello": hello})
        start += k
        p = subprocess.Popen(
            [sys.executable, __file__, "--client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert p.stdin is not None
        p.stdin.write(cfg + "\n")  # the tokens are too long for one argv string
        p.stdin.flush()
        procs.append(p)
    ok = 0
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            raise SystemExit("a client process died")
        ok += json.loads(line)["connected"]
    return procs, ok


def close_viewers(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()


# ---------------------------------------------------------------- measuring


def log(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def rss(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def settled_rss(pid: int, quiet_s: float = 3.0, limit_s: float = 30.0) -> int:
    """RSS once it has moved less than 64 KiB over `quiet_s` (or after `limit_s`)."""
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    while True:
        now = time.monotonic()
        samples.append((now, rss(pid)))
        recent = [r for t, r in samples if now - t <= quiet_s]
        if now - t0 >= quiet_s and max(recent) - min(recent) < 64 * 1024:
            return samples[-1][1]
        if now - t0 > limit_s:
            return samples[-1][1]
        time.sleep(0.5)


def measure(pid: int, url: str, args: argparse.Namespace, tokens: list[str]) -> dict[str, float]:
    t0 = time.monotonic()
    warm, _ = open_viewers(url, WARMUP, 1, tokens[-WARMUP:] if tokens else [])
    close_viewers(warm)
    time.sleep(1.0)
    before = settled_rss(pid)
    if args.trace:
        os.kill(pid, signal.SIGUSR1)  # snapshot "before"
        time.sleep(3.0)
    t1 = time.monotonic()
    procs, ok = open_viewers(url, args.viewers, args.clients, tokens[: args.viewers])
    t2 = time.monotonic()
    try:
        after = settled_rss(pid)
        log(f"warm-up and before {t1 - t0:.1f} s, connect {t2 - t1:.1f} s, "
            f"settle {time.monotonic() - t2:.1f} s")
        if args.trace:
            os.kill(pid, signal.SIGUSR2)  # snapshot "after", written to the trace file
            for _ in range(600):
                if os.path.exists(args.trace + ".done"):
                    break
                time.sleep(0.5)
    finally:
        close_viewers(procs)
    return {"connected": ok, "kib_per_conn": (after - before) / 1024 / max(ok, 1),
            "before_mib": before / 2**20, "after_mib": after / 2**20}


def service(kind: str, args: argparse.Namespace) -> dict[str, float]:
    import httpx

    from live.embedded_redis import EmbeddedRedis
    from live.tokens import TokenSigner

    embedded = EmbeddedRedis()
    redis_url = embedded.start()
    port = 20000 + secrets.randbelow(5000)
    db = tempfile.NamedTemporaryFile(suffix=".db", delete=False)
    secret = "bench-" + secrets.token_hex(8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    env.update(
        LIVE_REDIS_URL=redis_url,
        LIVE_DATABASE_URL=f"sqlite+aiosqlite:///{db.name}",
        LIVE_SECRET=secret,
        LIVE_LOG_LEVEL="warning",
        PYTHONPATH=str(ROOT),
    )
    serve = ["serve", "--port", str(port), "--no-drain"]
    if args.trace:
        env["IDLE_TRACE_FILE"] = args.trace
        cmd = [sys.executable, __file__, "--traced-serve", *serve]
    else:
        cmd = [str(ROOT / ".venv/bin/live"), *serve]
    proc = subprocess.Popen(cmd, env=env, cwd="/tmp", stdout=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        deadline = time.monotonic() + 180  # tracemalloc makes the start slow
        while True:
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
            time.sleep(0.2)
        sid = http.post("/api/streams", json={"title": "idle", "host_name": "b"}).json()["id"]
        tokens: list[str] = []
        if kind == "token":
            signer = TokenSigner(secret.encode())
            tokens = [signer.issue("viewer", f"v_idle{i:06d}", 3600, name=f"v{i}")
                      for i in range(args.viewers + WARMUP)]
        return measure(proc.pid, f"ws://127.0.0.1:{port}/ws/streams/{sid}", args, tokens)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.unlink(db.name)
        embedded.stop()


def raw(args: argparse.Namespace) -> dict[str, float]:
    from rawserver import raw_server

    with raw_server() as (port, pid, _):
        return measure(pid, f"ws://127.0.0.1:{port}/", args, [])


# ---------------------------------------------------------------- traced server


def _census() -> str:
    """Live objects of the types a connection may leave behind, and their referrers."""
    import gc
    from collections import Counter

    names = {"HttpToolsProtocol", "LimitedHttpToolsProtocol", "HubProtocol", "ServerCore",
             "Request", "Response", "Headers", "StreamReader", "UUID", "generator",
             "FlowControl", "RequestResponseCycle", "TimerHandle", "PseudoSocket"}
    objs = [o for o in gc.get_objects() if type(o).__name__ in names]
    counts = Counter(type(o).__name__ for o in objs)
    lines = [f"gc counts {gc.get_count()}, live: {dict(counts)}"]
    for name in ("LimitedHttpToolsProtocol", "Request", "Headers"):
        sample = next((o for o in objs if type(o).__name__ == name), None)
        if sample is not None:
            refs = [type(r).__name__ for r in gc.get_referrers(sample) if r is not objs]
            lines.append(f"a {name} is referred to by {refs}")
    lines.append(f"gc.collect() freed {gc.collect()} objects")
    return "\n".join(lines) + "\n\n"


def traced_serve(argv: list[str]) -> int:
    """`live serve` under tracemalloc; SIGUSR1 snapshots, SIGUSR2 writes the difference."""
    import tracemalloc

    from live.cli import main

    tracemalloc.start(12)
    snaps: list[tracemalloc.Snapshot] = []
    out = os.environ["IDLE_TRACE_FILE"]
    Path(out + ".done").unlink(missing_ok=True)

    def before(*_: object) -> None:
        snaps.append(tracemalloc.take_snapshot())

    def after(*_: object) -> None:
        snap = tracemalloc.take_snapshot()
        keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
        diff = snap.filter_traces(keep).compare_to(snaps[-1].filter_traces(keep), "traceback")
        with open(out, "w") as f:
            total = sum(d.size_diff for d in diff)
            f.write(f"total size diff {total} bytes\n")
            f.write(_census())
            for d in diff[:40]:
                f.write(f"{d.size_diff:+d} B, {d.count_diff:+d} blocks\n")
                for line in d.traceback.format(limit=12, most_recent_first=True):
                    f.write(line + "\n")
                f.write("\n")
        Path(out + ".done").touch()

    signal.signal(signal.SIGUSR1, before)
    signal.signal(signal.SIGUSR2, after)
    return main(argv)


def main() -> None:
    # The server inherits this: it holds one descriptor per viewer.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--viewers", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=2, help="viewer processes")
    ap.add_argument("--kinds", default="anon,token,raw")
    ap.add_argument("--trace", help="tracemalloc report of the service to this file")
    args = ap.parse_args()
    for kind in args.kinds.split(","):
        r = raw(args) if kind == "raw" else service(kind, args)
        print(f"{kind:6} {r['kib_per_conn']:6.2f} KiB/conn  connected {r['connected']}"
              f"/{args.viewers}  RSS {r['before_mib']:.1f} -> {r['after_mib']:.1f} MiB",
              flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        cfg = json.loads(sys.stdin.readline())
        client_main(cfg["url"], cfg["n"], cfg["tokens"], cfg["hello"])
    elif len(sys.argv) > 1 and sys.argv[1] == "--traced-serve":
        sys.exit(traced_serve(sys.argv[2:]))
    else:
        main()
