"""`LIVE_LOG_FORMAT=json`: every line `live serve` writes, uvicorn's included, is one JSON
object with `ts`, `level`, `event`, `logger` and the context fields of the call."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import websockets
from conftest import ROOT, free_port, new_stream, service_env


def start(env: dict[str, str], tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    err = tmp_path / f"stderr-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "live.cli", "serve", "--port", str(port), *args],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(err, "wb"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, err.read_text()
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url, err
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"live serve did not start:\n{err.read_text()}")


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(20)


async def test_every_stderr_line_is_a_json_object(
    redis_url: str, tmp_path: Path
) -> None:
    env = service_env(redis_url, f"sqlite+aiosqlite:///{tmp_path}/j.db",
                      LIVE_LOG_FORMAT="json", LIVE_LOG_LEVEL="info")
    proc, url, err = start(env, tmp_path, "--workers", "2", "--access-log")
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as api:
            stream = await new_stream(api, "json logs")
            assert (await api.get("/api/streams/nope")).status_code == 404
        ws_url = url.replace("http", "ws") + f"/ws/streams/{stream.id}"
        async with websockets.connect(ws_url, open_timeout=10) as ws:
            await asyncio.wait_for(ws.recv(), 10)  # hello: this worker subscribed
    finally:
        assert stop(proc) == 0

    lines = err.read_text().splitlines()
    assert lines
    records = []
    for line in lines:
        record = json.loads(line)  # every line, nothing else in between
        assert isinstance(record, dict), line
        assert {"ts", "level", "event", "logger"} <= record.keys(), line
        datetime.fromisoformat(record["ts"])
        records.append(record)
    loggers = {r["logger"] for r in records}
    # uvicorn's own lines (startup, access log) in the same format, from the workers too.
    assert "uvicorn.error" in loggers and "uvicorn.access" in loggers, loggers
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert any(r["path"] == "/api/streams" and r["method"] == "POST" and r["status"] == 201
               for r in access), access
    assert any(r["logger"] == "live.app" and "ready" in r["event"] for r in records)
    # Context fields come as fields of their own, not only inside the text.
    subscribed = [r for r in records if r["event"].startswith("subscribed to stream")]
    assert subscribed and all(r["stream"] == stream.id for r in subscribed), subscribed
    drainers = [r for r in records if r["logger"] == "orders.drain"
                or r["event"].startswith("drainer ")]
    assert drainers and all("consumer" in r for r in drainers), drainers


def test_text_is_the_default(redis_url: str, tmp_path: Path) -> None:
    env = service_env(redis_url, f"sqlite+aiosqlite:///{tmp_path}/t.db")
    proc, _, err = start(env, tmp_path)
    assert stop(proc) == 0
    lines = err.read_text().splitlines()
    assert lines and not any(line.startswith("{") for line in lines), lines


def test_a_bad_format_exits_2_naming_the_variable(tmp_path: Path) -> None:
    for name, value in (("LIVE_LOG_FORMAT", "yaml"), ("LIVE_LOG_LEVEL", "loud")):
        env = service_env(None, f"sqlite+aiosqlite:///{tmp_path}/b.db", **{name: value})
        done = subprocess.run(
            [sys.executable, "-m", "live.cli", "serve", "--port", str(free_port())],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=30,
        )
        assert done.returncode == 2, done.stderr
        assert name in done.stderr and "Traceback" not in done.stderr, done.stderr
