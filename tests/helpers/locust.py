"""Running the Locust load test headless against a service, and checking its outcome."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from helpers.services import ROOT, ServiceProcess, free_port

USERS = 12  # one host, the rest viewers and buyers


@dataclass
class LocustRun:
    returncode: int
    output: str
    stats: dict[str, dict[str, str]]  # "TYPE NAME" -> the row of *_stats.csv
    run_file: Path
    env: dict[str, str]

    def count(self, key: str) -> int:
        return int(self.stats[key]["Request Count"]) if key in self.stats else 0

    def deliveries(self) -> dict[str, int]:
        return {
            k.removeprefix("WS deliver "): self.count(k)
            for k in self.stats
            if k.startswith("WS deliver ")
        }


# A busy stream squeezed into seconds: sales every 2 s, chat every ~0.5 s.
BUSY_STREAM = [
    "--first-sale-at", "1", "--sale-every", "2", "--sale-duration", "2", "--sale-stock", "4",
    "--buyer-share", "0.5", "--chat-every", "0.5", "--message-every", "1", "--pin-every", "2",
]


def run_locust(service: ServiceProcess, out: Path, seconds: int, workers: int = 0) -> LocustRun:
    """Locust headless against `service`; with `workers`, a master and that many workers
    on loopback, the master handing them the options and the stream."""
    locust = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py")]
    cmd = [
        *locust, "--headless", "-u", str(USERS), "-r", str(USERS), "-t", f"{seconds}s",
        "--stop-timeout", "5", "--host", service.url, "--csv", str(out / "run"),
        "--only-summary", "--run-file", str(out / "run.json"), *BUSY_STREAM,
    ]
    env = {**service.env, "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[str]] = []
    if workers:
        port = str(free_port())
        cmd += ["--master", "--expect-workers", str(workers),
                "--master-bind-host", "127.0.0.1", "--master-bind-port", port]
        worker_cmd = [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", port]
        for i in range(workers):
            with (out / f"worker-{i}.log").open("w") as log:
                procs.append(subprocess.Popen(
                    worker_cmd, cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
                ))
    try:
        done = subprocess.run(
            cmd, cwd=out, env=env, capture_output=True, text=True, timeout=seconds + 90
        )
    finally:
        for proc in procs:  # they quit when the master does; make sure of it
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    stats: dict[str, dict[str, str]] = {}
    stats_csv = out / "run_stats.csv"
    if stats_csv.exists():
        with stats_csv.open() as f:
            for row in csv.DictReader(f):
                stats[f"{row['Type']} {row['Name']}".strip()] = row
    return LocustRun(done.returncode, done.stdout + done.stderr, stats, out / "run.json", env)


def assert_a_clean_run(run: LocustRun) -> None:
    assert run.stats, run.output[-3000:]
    viewers = USERS - 1
    assert run.count("WS connect") >= viewers, run.output[-3000:]
    delivered = run.deliveries()
    # Each viewer is greeted, and hears the host and the sales it launched.
    assert delivered.get("hello", 0) >= viewers, delivered
    assert delivered.get("host.message", 0) >= viewers, delivered
    assert delivered.get("sale.started", 0) >= 1, delivered
    assert delivered.get("comment", 0) > 0 and delivered.get("likes", 0) > 0, delivered
    # Buys and payments from the viewers' own tally: the stats table may be written
    # before the last confirm's request is counted in it (users finish their task while
    # the run stops), the run file after.
    tally = json.loads(run.run_file.read_text())["tally"]
    assert tally["reserved"] > 0 and tally["confirmed"], (tally, sorted(run.stats))
    assert run.count("WS buy") + run.count("POST /api/streams/[id]/reservations") > 0
    failures = int(run.stats["Aggregated"]["Failure Count"])
    assert failures == 0, (run.stats["Aggregated"], run.output[-3000:])
    assert run.returncode == 0, run.output[-3000:]


def check(run: LocustRun, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtest.check", "--run-file", str(run.run_file), *args],
        cwd=ROOT,
        env=run.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
