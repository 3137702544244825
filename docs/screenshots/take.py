# ruff: noqa: RUF001  (Chinese text uses full-width punctuation on purpose)
"""Screenshots of the pages for the README: a short scripted stream (a host with
products and a flash sale, a few viewers chatting and buying), captured at phone
(390x844) and laptop (1366x768) size. Run with `make screenshots`.

It starts its own `live serve` (embedded Redis, a temporary SQLite file) on a free port
and drives Debian's chromium through Playwright, like the browser tests."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.async_api import async_playwright
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("LIVE_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
         "device_scale_factor": 2}
LAPTOP = {"viewport": {"width": 1366, "height": 768}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def scene(base: str, lang: str) -> None:
    c = httpx.AsyncClient(base_url=base, timeout=10)

    async def post(path: str, token: str | None = None, **body: object) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = await c.post(path, json=body, headers=headers)
        r.raise_for_status()
        return r.json()

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        host_ctx = await browser.new_context(**LAPTOP, base_url=base)
        host = await host_ctx.new_page()
        await host.goto(f"/?lang={lang}")
        await host.get_by_test_id("title").fill("Sneaker drop: AF1 restock" if lang == "en"
                                                 else "球鞋上新：AF1 补货")
        await host.get_by_test_id("host-name").fill("Ann")
        await host.get_by_test_id("go-live").click()
        await host.wait_for_url("**/host/**")
        sid = host.url.split("/host/")[1].split("?")[0].split("#")[0]
        token = host.url.split("#token=")[1]
        for sku, title, price, stock in (("af1-42", "AF1 '07 size 42", 11900, 40),
                                         ("dunk-40", "Dunk Low size 40", 8950, 25),
                                         ("socks", "Crew socks, 3 pairs", 1500, 200)):
            await post(f"/api/streams/{sid}/products", token, sku=sku, title=title,
                       price_cents=price, stock=stock)
        await post(f"/api/streams/{sid}/pin", token, sku="af1-42")
        await post(f"/api/streams/{sid}/sales", token, sku="af1-42", price_cents=9900,
                   stock=20, duration_s=300)
        await host.reload()
        phone_ctx = await browser.new_context(**PHONE, base_url=base)
        phone = await phone_ctx.new_page()
        await phone.goto(f"/s/{sid}?lang={lang}")
        await phone.get_by_test_id("viewer-name").fill("小明")
        await phone.get_by_test_id("join").click()
        await phone.get_by_test_id("connection-state").filter(has_text="live" if lang == "en"
                                                              else "直播中").wait_for()
        # A few other viewers chat and buy over the API.
        lines = ["Is the 42 true to size?", "这双鞋真好看！", "ordered two!", "ships today?",
                 "The white one please", "价格太香了"]
        names = ["Bo", "Wang", "Lea", "Chen", "Sam", "Yu"]
        ws_base = base.replace("http", "ws")
        for i, (name, line) in enumerate(zip(names, lines, strict=True)):
            v = await post("/api/viewers", name=name)
            async with connect(f"{ws_base}/ws/streams/{sid}?token={v['token']}") as ws:
                await ws.recv()
                await ws.send(json.dumps({"type": "comment", "text": line}))
                for _ in range(3 + i):
                    await ws.send('{"type":"like"}')
                await asyncio.sleep(0.3)
            if i % 2 == 0:
                r = await post(f"/api/streams/{sid}/reservations", v["token"], sku="af1-42",
                               qty=1 + i % 2, key=f"shot-{i}")
                if i != 4:
                    await post(f"/api/reservations/{r['id']}/confirm", v["token"])
        await post(f"/api/streams/{sid}/messages", token,
                   text="Only 20 pairs at 99 — go go go!" if lang == "en"
                   else "秒杀价只有 20 双，冲！")
        await phone.get_by_test_id("like").click()
        await phone.get_by_test_id("buy").click()
        await phone.get_by_test_id("pay").wait_for()
        await asyncio.sleep(2.5)  # figures poll every 2 s; the chart samples every 5 s
        for _ in range(3):
            await asyncio.sleep(5)
        suffix = "" if lang == "en" else "-zh"
        await phone.screenshot(path=str(OUT / f"watch-phone{suffix}.png"))
        await host.screenshot(path=str(OUT / f"host-laptop{suffix}.png"))
        if lang == "en":
            wide = await (await browser.new_context(**LAPTOP, base_url=base)).new_page()
            await wide.goto(f"/s/{sid}?lang={lang}")
            await wide.get_by_test_id("viewer-name").fill("Jo")
            await wide.get_by_test_id("join").click()
            await asyncio.sleep(1.5)
            await wide.screenshot(path=str(OUT / "watch-laptop.png"))
            narrow = await (await browser.new_context(**PHONE, base_url=base)).new_page()
            await narrow.goto(host.url.replace(base, ""))
            await asyncio.sleep(2.5)
            await narrow.screenshot(path=str(OUT / "host-phone.png"))
            start = await (await browser.new_context(**LAPTOP, base_url=base)).new_page()
            await start.goto("/?lang=en")
            await asyncio.sleep(1)
            await start.screenshot(path=str(OUT / "start-laptop.png"))
        await browser.close()
    await c.aclose()


def main() -> int:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVE_")}
        env.update(LIVE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp}/live.db",
                   LIVE_SECRET_FILE=f"{tmp}/live.secret", LIVE_DATA_DIR=f"{tmp}/data")
        proc = subprocess.Popen([sys.executable, "-m", "live.cli", "serve", "--port", str(port)],
                                env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            asyncio.run(scene(base, "en"))
            asyncio.run(scene(base, "zh"))
        finally:
            proc.terminate()
            proc.wait(15)
    print("screenshots in", OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
