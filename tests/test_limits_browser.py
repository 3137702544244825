"""The closing handshake as a browser sees it: Debian's chromium (through Playwright)
holds many sockets when the stream ends, and every one reports a clean close (1000,
wasClean). Before the server waited for the client's Close, Chromium reported
`wasClean: false` for a good part of them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ServiceProcess, new_stream, new_viewer, service_env
from limits_helpers import tracebacks

# Fault, load and concurrency runs: `make test-fast` leaves them out.
pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("LIVE_TEST_CHROMIUM", "/usr/bin/chromium")
SOCKETS = 48

OPEN_SOCKETS = """
([url, n]) => new Promise((resolve, reject) => {
  window.closes = [];
  let opened = 0;
  for (let i = 0; i < n; i++) {
    const ws = new WebSocket(url, ["live.json"]);
    ws.onmessage = (e) => {
      if (JSON.parse(e.data).type === "hello" && ++opened === n) resolve(opened);
    };
    ws.onclose = (e) => window.closes.push({code: e.code, clean: e.wasClean});
    ws.onerror = () => reject(new Error("socket error"));
  }
  setTimeout(() => reject(new Error("not all sockets opened")), 20000);
})
"""


@pytest.fixture
def svc(redis_url: str, sqlite_url: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    assert os.path.exists(CHROMIUM), f"install chromium (apt-get install -y chromium): {CHROMIUM}"
    # One viewer holds all the sockets: lift the per-viewer socket cap.
    env = service_env(redis_url, sqlite_url, LIVE_WS_MAX_CONNECTIONS_PER_VIEWER="0")
    service = ServiceProcess(env=env).start(tmp_path)
    yield service
    service.stop()
    assert tracebacks(service) == []


async def test_chromium_sees_clean_closes_when_the_stream_ends(svc: ServiceProcess) -> None:
    from playwright.async_api import async_playwright

    async with httpx.AsyncClient(base_url=svc.url, timeout=10) as api:
        stream = await new_stream(api)
        _, token = await new_viewer(api)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = await browser.new_page()
                await page.goto(svc.url + "/healthz")
                url = f"{svc.ws_url}/ws/streams/{stream.id}?token={token}"
                assert await page.evaluate(OPEN_SOCKETS, [url, SOCKETS]) == SOCKETS
                r = await api.post(f"/api/streams/{stream.id}/end", headers=stream.auth)
                assert r.status_code == 200
                await page.wait_for_function(f"window.closes.length === {SOCKETS}", timeout=20000)
                closes = await page.evaluate("window.closes")
            finally:
                await browser.close()
    assert [c["code"] for c in closes] == [1000] * SOCKETS
    unclean = [c for c in closes if not c["clean"]]
    assert unclean == [], f"{len(unclean)} of {SOCKETS} closes were not clean"
