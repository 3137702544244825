"""docs/nginx.conf works: two services behind nginx on loopback, HTTP and websockets."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import websockets
from conftest import ROOT, ServiceProcess, free_port, service_env, service_pair
from prometheus_client.parser import text_string_to_metric_families

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def site_config(ports: list[int], listen: int) -> str:
    """docs/nginx.conf with the upstreams and the listener on loopback."""
    text = (ROOT / "docs/nginx.conf").read_text()
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;\n" for p in ports)
    text, n = re.subn(r"(    server 10\.0\.0\.\d+:8000[^\n]*\n)+", servers, text)
    assert n == 1
    text, n = re.subn(r"listen 80;", f"listen 127.0.0.1:{listen};", text)
    assert n == 1
    return text


@pytest.fixture
def proxied(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, tuple[ServiceProcess, ...]]]:
    env = service_env(redis_url, f"sqlite+aiosqlite:///{tmp_path}/n.db")
    with service_pair(env, tmp_path) as services:
        port = free_port()
        (tmp_path / "livecart.conf").write_text(site_config([s.port for s in services], port))
        user = "user root;\n" if os.geteuid() == 0 else ""  # temp dirs under tmp_path
        (tmp_path / "nginx.conf").write_text(
            f"{user}daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
            f"error_log {tmp_path}/error.log;\nevents {{ worker_connections 1024; }}\n"
            f"http {{\n  access_log {tmp_path}/access.log;\n"
            + "".join(f"  {kind}_temp_path {tmp_path}/{kind};\n"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + f"  include {tmp_path}/livecart.conf;\n}}\n"
        )
        proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                                stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 15
            while True:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "nginx did not come up"
                time.sleep(0.1)
            yield url, services
        finally:
            proc.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def ws_connections(svc: ServiceProcess) -> float:
    text = httpx.get(svc.url + "/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "livecart_ws_connections":
            return sum(s.value for s in family.samples)
    raise AssertionError("no livecart_ws_connections")


async def test_http_and_websockets_through_nginx(proxied) -> None:
    url, services = proxied
    async with httpx.AsyncClient(base_url=url, timeout=10) as api:
        r = await api.post("/api/streams", json={"title": "proxied", "host_name": "Ann"})
        assert r.status_code == 201, r.text
        stream = r.json()
        auth = {"Authorization": f"Bearer {stream['host_token']}"}
        ws_url = url.replace("http://", "ws://") + stream["ws_path"]
        sockets = [await websockets.connect(ws_url, open_timeout=10, max_queue=None)
                   for _ in range(8)]
        try:
            for ws in sockets:
                hello = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                assert hello["type"] == "hello" and hello["data"]["id"] == stream["id"]
            # least_conn spread the sockets over both services (each counts its own).
            counts = [ws_connections(s) for s in services]
            assert sum(counts) == 8 and all(c > 0 for c in counts), counts
            r = await api.post(f"/api/streams/{stream['id']}/messages", headers=auth,
                               json={"text": "through the proxy"})
            assert r.status_code == 202, r.text
            for ws in sockets:
                while True:
                    msg = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                    if msg["type"] == "host.message":
                        assert msg["data"]["text"] == "through the proxy"
                        break
        finally:
            for ws in sockets:
                await ws.close()
        # Errors keep their shape through the proxy; an oversized body stops at nginx.
        r = await api.get("/api/streams/nope")
        assert r.status_code == 404 and r.json()["error"] == "unknown_stream"
        r = await api.post("/api/streams", content=b"x" * (65 * 1024),
                           headers={"content-type": "application/json"})
        assert r.status_code == 413
