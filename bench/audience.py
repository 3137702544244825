"""A large audience on one box: lean viewers (bench/leanclient.py) against the service
and against the raw pre-framed writer of bench/fanout.py, in the same run.

    .venv/bin/python bench/audience.py [--viewers 10000] [--messages 100] [--rate 20]
        [--clients 2] [--workers 2] [--no-raw]

The service is `live serve --workers W --no-drain` on a private embedded Redis; the raw
server is one process (it is the per-delivery anchor, not a sizing). Every process (the
service, each viewer process) starts in a session of its own, as daemons and separate
load generators run in production (the kernel's autogroup would otherwise share one
slice among them). Reports, per server: CPU µs per delivered message (user+system of
every server process over the broadcast phase), delivered/expected, p50/p99 latency
from the send timestamp (one viewer in ten), and, for the service, the cores a full
audience of 20,000 viewers at 20 messages/s would need at the measured cost.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import psutil  # noqa: E402
from fanout import collect, cpu  # noqa: E402
from leanclient import lean_viewer_process  # noqa: E402
from rawserver import PAD, raw_server  # noqa: E402

from live.embedded_redis import EmbeddedRedis  # noqa: E402

TARGET_VIEWERS, TARGET_RATE = 20_000, 20.0


def _own_session() -> None:
    os.setsid()


def run(port: int, path: str, wanted: str, args: argparse.Namespace,
        server: Callable[[], list[psutil.Process]], publish: Callable[[int], None],
        ) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    per = [args.viewers // args.clients + (1 if i < args.viewers % args.clients else 0)
           for i in range(args.clients)]
    pipes, procs = [], []
    for n in per:
        a, b = ctx.Pipe()
        p = ctx.Process(target=_viewers_in_own_session,
                        args=("127.0.0.1", port, path, n, wanted, args.messages, b),
                        daemon=True)
        p.start()
        pipes.append(a)
        procs.append(p)
    connected = 0
    for a in pipes:
        if not a.poll(300):
            raise SystemExit(f"{wanted}: viewers did not connect in 300 s")
        connected += a.recv()[1]
    time.sleep(2.0)  # hellos and first viewer counts out of the way
    procs_now = server()
    cpu0 = cpu(procs_now)
    t0 = time.perf_counter()
    for i in range(args.messages):
        delay = t0 + i / args.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        publish(i)
    send_s = time.perf_counter() - t0
    time.sleep(max(3.0, 0.2 * args.messages / args.rate))
    cpu1 = cpu(procs_now)
    got, q = collect(pipes, procs)
    return {"connected": connected, "expected": connected * args.messages, "delivered": got,
            "cpu_us": (cpu1 - cpu0) * 1e6 / max(got, 1), "p50": q[49], "p99": q[98],
            "send_s": send_s, "cpu_s": cpu1 - cpu0}


def _viewers_in_own_session(*a: object) -> None:
    _own_session()
    lean_viewer_process(*a)  # type: ignore[arg-type]


def service_run(redis_url: str, args: argparse.Namespace) -> dict[str, float]:
    port = 20000 + secrets.randbelow(5000)
    db = tempfile.NamedTemporaryFile(suffix=".db", delete=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
    env.update(LIVE_REDIS_URL=redis_url, LIVE_DATABASE_URL=f"sqlite+aiosqlite:///{db.name}",
               LIVE_SECRET="bench-" + secrets.token_hex(8), LIVE_SIGNUP_PER_MIN="0",
               LIVE_LOG_LEVEL="warning", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/live"), "serve", "--port", str(port), "--no-drain",
         "--workers", str(args.workers)],
        env=env, cwd="/tmp", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        for _ in range(600):
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        stream = http.post("/api/streams", json={"title": "audience", "host_name": "b"}).json()
        sid, auth = stream["id"], {"Authorization": f"Bearer {stream['host_token']}"}
        top = psutil.Process(proc.pid)

        def publish(i: int) -> None:
            http.post(f"/api/streams/{sid}/messages", json={"text": f"m{i:06d} {PAD}"},
                      headers=auth).raise_for_status()

        return run(port, f"/ws/streams/{sid}", "host.message", args,
                   lambda: [top, *top.children(recursive=True)], publish)
    finally:
        proc.terminate()
        proc.wait(20)
        os.unlink(db.name)


def raw_run(args: argparse.Namespace) -> dict[str, float]:
    with raw_server(own_session=True) as (port, pid, publish):
        return run(port, "/", "bench", args, lambda: [psutil.Process(pid)], publish)


def show(name: str, r: dict[str, float], viewers: int) -> None:
    print(f"{name:8} {r['cpu_us']:9.2f} {r['delivered']:>10}/{r['expected']:<10} "
          f"{r['p50']:8.1f} {r['p99']:8.1f} {r['send_s']:7.1f}  connected "
          f"{r['connected']}/{viewers}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--viewers", type=int, default=10000)
    ap.add_argument("--messages", type=int, default=100)
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--clients", type=int, default=2, help="viewer processes")
    ap.add_argument("--workers", type=int, default=2, help="service worker processes")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw anchor")
    args = ap.parse_args()
    print(f"audience: {args.viewers} lean viewers x {args.messages} messages at "
          f"{args.rate:g}/s, {args.clients} client processes, {args.workers} workers")
    print(f"{'':8} {'CPU us/d':>9} {'delivered/expected':>21} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'send s':>7}")
    raw = None if args.no_raw else raw_run(args)
    if raw is not None:
        show("raw", raw, args.viewers)
    embedded = EmbeddedRedis()
    url = embedded.start()
    try:
        svc = service_run(url, args)
    finally:
        embedded.stop()
    show("service", svc, args.viewers)
    if raw is not None:
        print(f"{'ratio':8} {svc['cpu_us'] / raw['cpu_us']:9.2f}")
    cores = svc["cpu_us"] * TARGET_VIEWERS * TARGET_RATE / 1e6
    print(f"at {svc['cpu_us']:.2f} us per delivery, {TARGET_VIEWERS} viewers x "
          f"{TARGET_RATE:g}/s need {cores:.2f} server cores (this box has 2, shared with "
          "the viewers here)")


if __name__ == "__main__":
    main()
