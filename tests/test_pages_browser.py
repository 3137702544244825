"""The pages in a real browser (Debian's chromium through Playwright), against the real
service: a host goes live and sells, a viewer on a phone watches, chats, buys and pays,
drops off the network and comes back, and the stream ends on both pages."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pages_helpers import (
    LAPTOP,
    PHONE,
    CutProxy,
    ServiceProcess,
    api,
    join,
    launch_chromium,
    page_errors,
    service_env,
)
from playwright.async_api import expect
from websockets.asyncio.client import connect as ws_connect

NICE = "这双鞋真好看\uff01"  # "these shoes look great!", with a full-width "!"
SOLD_OUT_ZH = "已售罄\uff0c没有库存了\u3002"
T = 20_000  # ms: the machine is shared and slow at times; every wait is for an event


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    async with launch_chromium() as b:
        yield b


@pytest.fixture(scope="module")
def proxy(service: ServiceProcess) -> Iterator[CutProxy]:
    p = CutProxy(service.port).start()
    yield p
    p.stop()


expect.set_options(timeout=T)


async def add_product(host: Any, sku: str, title: str, price: str, stock: str) -> None:
    await host.get_by_test_id("product-sku").fill(sku)
    await host.get_by_test_id("product-title").fill(title)
    await host.get_by_test_id("product-price").fill(price)
    await host.get_by_test_id("product-stock").fill(stock)
    await host.get_by_test_id("add-product").click()


@pytest.mark.slow
async def test_host_sells_viewer_buys_drops_off_and_the_stream_ends(
    browser: Any, proxy: CutProxy, service: ServiceProcess
) -> None:
    # --- the host goes live from the start page ---------------------------------------
    host_ctx = await browser.new_context(**LAPTOP, base_url=proxy.url)
    host = await host_ctx.new_page()
    host_errors = page_errors(host)
    await host.goto("/")
    await host.get_by_test_id("title").fill("Sneaker drop")
    await host.get_by_test_id("host-name").fill("Ann")
    await host.get_by_test_id("go-live").click()
    await host.wait_for_url(re.compile(r"/host/s_[0-9a-f]+#token="))
    sid = host.url.split("/host/")[1].split("#")[0]
    host_token = host.url.split("#token=")[1]
    await expect(host.get_by_test_id("connection-state")).to_have_text("live")

    # Products, a pin, a flash sale.
    await add_product(host, "af1-42", "AF1 size 42", "119", "50")
    await expect(host.get_by_test_id("product-row")).to_have_count(1)
    await add_product(host, "dunk-40", "Dunk Low 40", "89.50", "30")
    await expect(host.get_by_test_id("product-row")).to_have_count(2)
    af1 = host.get_by_test_id("product-row").filter(has_text="af1-42")
    await af1.get_by_test_id("pin").click()
    await expect(af1.get_by_test_id("pin")).to_have_attribute("aria-pressed", "true")
    await host.get_by_test_id("sale-sku").fill("af1-42")
    await host.get_by_test_id("sale-price").fill("99")
    await host.get_by_test_id("sale-stock").fill("5")
    await host.get_by_test_id("sale-duration").fill("600")
    await host.get_by_test_id("start-sale").click()
    await expect(host.get_by_test_id("sale-row")).to_have_count(1)
    state = await api(service.url, "GET", f"/api/streams/{sid}")
    assert state["pinned_sku"] == "af1-42"
    assert [p["price_cents"] for p in state["products"]] == [11900, 8950]
    assert state["sales"][0]["price_cents"] == 9900 and state["sales"][0]["stock"] == 5

    # --- a viewer on a phone joins through the viewers' link ----------------------------
    link = await host.get_by_test_id("viewer-link").input_value()
    assert link == f"{proxy.url}/s/{sid}"
    viewer_ctx = await browser.new_context(**PHONE)
    viewer = await viewer_ctx.new_page()
    viewer_errors = page_errors(viewer)
    await viewer.goto(link)
    await join(viewer, "小明")
    offer = viewer.get_by_test_id("pinned-product")
    await expect(offer).to_contain_text("AF1 size 42")
    await expect(offer).to_contain_text("99.00")
    await expect(viewer.get_by_test_id("stock-left")).to_have_text("5")
    countdown = viewer.get_by_test_id("sale-countdown")
    await expect(countdown).to_have_text(re.compile(r"^(9|10):\d\d$"))
    first = await countdown.inner_text()
    await expect(countdown).not_to_have_text(first)  # it moves by itself
    await expect(viewer.get_by_test_id("buy")).to_be_visible()

    # Chat in Chinese, likes; the host sees both.
    await viewer.get_by_test_id("comment-text").fill(NICE)
    await viewer.get_by_test_id("send-comment").click()
    await expect(viewer.get_by_test_id("comment-row").filter(has_text=NICE)).to_have_count(1)
    host_row = host.get_by_test_id("comment-row").filter(has_text=NICE)
    await expect(host_row).to_have_count(1)
    await expect(host_row).to_contain_text("小明")
    for _ in range(3):
        await viewer.get_by_test_id("like").click()
    await expect(viewer.get_by_test_id("like-count")).to_have_text("3")
    await expect(host.get_by_test_id("stat-likes")).to_have_text("3")
    await expect(host.get_by_test_id("stat-viewers")).not_to_have_text("0")
    await expect(viewer.get_by_test_id("viewer-count")).not_to_have_text("0")

    # Buy: a held reservation with its own countdown, then pay.
    await viewer.get_by_test_id("buy").click()
    status = viewer.get_by_test_id("reservation-status")
    await expect(status).to_contain_text(re.compile(r"\d+:\d\d"))
    held = await status.inner_text()
    await expect(status).not_to_have_text(held)  # the hold counts down
    await expect(viewer.get_by_test_id("stock-left")).to_have_text("4")
    await expect(host.get_by_test_id("stat-reserved")).to_have_text("1")
    await viewer.get_by_test_id("pay").click()
    await expect(status).to_contain_text("Paid")
    await expect(viewer.get_by_test_id("pay")).to_be_hidden()
    mine = viewer.get_by_test_id("my-order-row")
    await expect(mine).to_have_count(1)
    await expect(mine).to_have_attribute("data-status", "paid")

    # The host sees the order and the figures move.
    order = host.get_by_test_id("order-row")
    await expect(order).to_have_count(1)
    await expect(order).to_have_attribute("data-status", "paid")
    await expect(order).to_contain_text("小明")
    await expect(host.get_by_test_id("stat-paid")).to_have_text("1")
    await expect(host.get_by_test_id("stat-revenue")).to_have_attribute("data-value", "9900")
    await expect(host.get_by_test_id("stat-revenue")).to_have_text("99.00")
    await expect(host.get_by_test_id("stat-reserved")).to_have_text("0")

    # A host message, then a comment the host deletes: gone from both pages.
    note = "Only 5 pairs at this price!"
    await host.get_by_test_id("message-text").fill(note)
    await host.get_by_test_id("send-message").click()
    await expect(viewer.get_by_test_id("host-message")).to_contain_text(note)
    await viewer.get_by_test_id("comment-text").fill("spam spam")
    await viewer.get_by_test_id("send-comment").click()
    await expect(viewer.get_by_test_id("comment-row").filter(has_text="spam spam")).to_have_count(1)
    spam = host.get_by_test_id("comment-row").filter(has_text="spam spam")
    await spam.get_by_test_id("delete-comment").click()
    await expect(viewer.get_by_test_id("comment-row").filter(has_text="spam spam")).to_have_count(0)
    await expect(spam).to_have_count(0)
    await expect(viewer.get_by_test_id("comment-row").filter(has_text=NICE)).to_have_count(1)

    # --- the network drops; meanwhile others chat and the host talks --------------------
    proxy.cut()
    await expect(viewer.get_by_test_id("connection-state")).not_to_have_text("live")
    other = await api(service.url, "POST", "/api/viewers", json={"name": "Wang"})
    url = f"{service.ws_url}/ws/streams/{sid}?token={other['token']}"
    missed = [f"while you were away {i}" for i in range(5)]
    async with ws_connect(url, subprotocols=["live.json"]) as ws:
        await asyncio.wait_for(ws.recv(), 10)  # hello
        for text in missed:
            await ws.send(f'{{"type":"comment","text":"{text}"}}')
            await asyncio.sleep(0.05)
        seen = 0
        while seen < len(missed):  # each broadcast back: it is in the stream's history
            if '"type":"comment"' in await asyncio.wait_for(ws.recv(), 10):
                seen += 1
    await api(service.url, "POST", f"/api/streams/{sid}/messages", host_token,
        json={"text": "Back in 5 minutes"})
    proxy.restore()
    await expect(viewer.get_by_test_id("connection-state")).to_have_text("live")
    for text in missed:  # each exactly once, none missing
        await expect(viewer.get_by_test_id("comment-row").filter(has_text=text)).to_have_count(1)
        await expect(host.get_by_test_id("comment-row").filter(has_text=text)).to_have_count(1)
    await expect(viewer.get_by_test_id("host-message")).to_contain_text("Back in 5 minutes")
    await expect(viewer.get_by_test_id("comment-row").filter(has_text=NICE)).to_have_count(1)
    await expect(viewer.get_by_test_id("comment-row").filter(has_text="spam spam")).to_have_count(0)
    await expect(viewer.locator("#missed")).to_be_hidden()  # nothing was lost
    order_count = await viewer.get_by_test_id("comment-row").count()
    assert order_count == 1 + len(missed)

    # --- the host ends the stream: both pages end cleanly -------------------------------
    await host.get_by_test_id("end-stream").click()
    await expect(host.get_by_test_id("stream-ended")).to_be_visible()
    await expect(viewer.get_by_test_id("stream-ended")).to_be_visible()
    await expect(viewer.get_by_test_id("buy")).to_be_disabled()
    await expect(viewer.get_by_test_id("connection-state")).not_to_have_text("live")
    assert (await api(service.url, "GET", f"/api/streams/{sid}"))["status"] == "ended"

    # The host token went to the service in headers only, never in a URL.
    targets = proxy.request_targets()
    assert any(t.startswith(f"/host/{sid}") for t in targets)
    assert not [t for t in targets if host_token in t]
    assert host_errors == [] and viewer_errors == []
    await host_ctx.close()
    await viewer_ctx.close()


async def test_reservation_made_elsewhere_shows_on_the_watch_page(
    browser: Any, proxy: CutProxy, service: ServiceProcess
) -> None:
    """A buy over HTTP (another tab, an app) reaches the open page as a `reservation`."""
    s = await api(service.url, "POST", "/api/streams", json={"title": "Tea", "host_name": "Li"})
    await api(service.url, "POST", f"/api/streams/{s['id']}/products", s["host_token"],
        json={"sku": "oolong", "title": "Oolong 250 g", "price_cents": 4500, "stock": 10})
    ctx = await browser.new_context(**PHONE, base_url=proxy.url)
    page = await ctx.new_page()
    await page.goto(f"/s/{s['id']}")
    await join(page, "Mei")
    token = await page.evaluate("JSON.parse(localStorage.getItem('livecart.viewer')).token")
    r = await api(service.url, "POST", f"/api/streams/{s['id']}/reservations", token,
            json={"sku": "oolong", "qty": 2, "key": "elsewhere-1"})
    status = page.get_by_test_id("reservation-status")
    await expect(status).to_contain_text("Held for you")
    await expect(page.get_by_test_id("pay")).to_be_visible()
    await api(service.url, "POST", f"/api/reservations/{r['id']}/confirm", token)
    await expect(status).to_contain_text("Paid")
    await expect(page.get_by_test_id("my-order-row")).to_have_attribute("data-status", "paid")
    await ctx.close()


@pytest.mark.slow
async def test_missed_messages_are_said_when_the_history_is_gone(
    browser: Any, start_service: Any, redis_url: str, sqlite_url: str
) -> None:
    svc = start_service(service_env(redis_url, sqlite_url, LIVE_HISTORY_SIZE="5"))
    proxy = CutProxy(svc.port).start()
    try:
        s = await api(svc.url, "POST", "/api/streams", json={"title": "Quiet", "host_name": "Ann"})
        ctx = await browser.new_context(**PHONE, base_url=proxy.url)
        page = await ctx.new_page()
        await page.goto(f"/s/{s['id']}")
        await expect(page.get_by_test_id("connection-state")).to_have_text("live")
        proxy.cut()
        await expect(page.get_by_test_id("connection-state")).not_to_have_text("live")
        # Far more than the history keeps (it trims whole nodes of ~100 entries).
        async with httpx.AsyncClient(base_url=svc.url, timeout=10) as c:
            for i in range(260):
                r = await c.post(f"/api/streams/{s['id']}/messages", json={"text": f"note {i}"},
                           headers={"Authorization": f"Bearer {s['host_token']}"})
                assert r.status_code == 202
        proxy.restore()
        await expect(page.get_by_test_id("connection-state")).to_have_text("live")
        await expect(page.locator("#missed")).to_be_visible()
        await expect(page.locator("#missed")).to_contain_text("missed")
        await ctx.close()
    finally:
        proxy.stop()


async def test_chinese_strings_and_errors_in_words(
    browser: Any, proxy: CutProxy, service: ServiceProcess
) -> None:
    # ?lang=zh, and a Chinese browser without it; ?lang=en wins over the browser.
    ctx = await browser.new_context(**LAPTOP, base_url=proxy.url, locale="zh-CN")
    page = await ctx.new_page()
    await page.goto("/?lang=zh")
    await expect(page.get_by_test_id("go-live")).to_have_text("开始直播")
    await expect(page.locator("html")).to_have_attribute("lang", "zh")
    await page.goto("/")
    await expect(page.get_by_test_id("go-live")).to_have_text("开始直播")
    await page.goto("/?lang=en")
    await expect(page.get_by_test_id("go-live")).to_have_text("Go live")

    # Sold out, in Chinese words and never as a code.
    s = await api(service.url, "POST", "/api/streams", json={"title": "一件", "host_name": "Ann"})
    await api(service.url, "POST", f"/api/streams/{s['id']}/products", s["host_token"],
        json={"sku": "cup", "title": "茶杯", "price_cents": 1500, "stock": 1})
    await api(service.url, "POST", f"/api/streams/{s['id']}/pin", s["host_token"],
              json={"sku": "cup"})
    vctx = await browser.new_context(**PHONE, base_url=proxy.url, locale="zh-CN")
    viewer = await vctx.new_page()
    await viewer.goto(f"/s/{s['id']}")
    await expect(viewer.get_by_test_id("join")).to_have_text("加入")
    join_zh = viewer.get_by_test_id("viewer-name")
    await join_zh.fill("小红")
    await viewer.get_by_test_id("join").click()
    await expect(viewer.get_by_test_id("buy")).to_have_text("立即购买")
    await expect(viewer.get_by_test_id("stock-left")).to_have_text("1")
    other = await api(service.url, "POST", "/api/viewers", json={"name": "Bo"})
    await api(service.url, "POST", f"/api/streams/{s['id']}/reservations", other["token"],
        json={"sku": "cup", "qty": 1, "key": "k1"})
    # The page may still show 1 for a moment: a buy that loses the race says so in words.
    await expect(viewer.get_by_test_id("stock-left")).to_have_text("0")
    await expect(viewer.get_by_test_id("buy")).to_have_text("已售罄")
    await viewer.evaluate("document.querySelector('[data-testid=buy]').disabled = false")
    await viewer.get_by_test_id("buy").click()
    msg = viewer.locator("#offer-msg")
    await expect(msg).to_have_text(SOLD_OUT_ZH)
    assert "sold_out" not in await viewer.locator("body").inner_text()
    # A muted viewer is told so in words.
    vid = await viewer.evaluate("JSON.parse(localStorage.getItem('livecart.viewer')).viewer_id")
    await api(service.url, "POST", f"/api/streams/{s['id']}/mutes", s["host_token"],
        json={"viewer_id": vid})
    await viewer.get_by_test_id("comment-text").fill("你好")
    await viewer.get_by_test_id("send-comment").click()
    await expect(viewer.locator("#composer-msg")).to_have_text("主播已在本场直播中将你禁言。")
    await ctx.close()
    await vctx.close()


def test_every_string_has_both_languages() -> None:
    import json

    root = Path(__file__).resolve().parent.parent / "live" / "pages" / "static" / "i18n"
    en = json.loads((root / "en.json").read_text())
    zh = json.loads((root / "zh.json").read_text())
    assert set(en) == set(zh)
    for table in (en, zh):  # text around a number may be empty in one language
        assert all(v.strip() or k.endswith(("_before", "_after")) for k, v in table.items())
    # Every {{key}} the templates use is in the tables.
    templates = (root.parent.parent / "templates").glob("*.html")
    used = {k for t in templates for k in re.findall(r"\{\{([a-z0-9_]+)\}\}", t.read_text())}
    assert used - {"lang", "version", "strings_json"} <= set(en)


async def test_host_console_keeps_its_token_out_of_urls_and_finds_it_again(
    browser: Any, proxy: CutProxy, service: ServiceProcess
) -> None:
    s = await api(service.url, "POST", "/api/streams", json={"title": "Keys", "host_name": "Ann"})
    link = f"/host/{s['id']}#token={s['host_token']}"
    ctx = await browser.new_context(**LAPTOP, base_url=proxy.url)
    page = await ctx.new_page()
    # Without the fragment and nothing stored: the console asks for the host link.
    await page.goto(f"/host/{s['id']}")
    await expect(page.locator("#no-token")).to_be_visible()
    await page.locator("#host-link").fill(proxy.url + link)
    await page.locator("#token-form button").click()
    await expect(page.get_by_test_id("connection-state")).to_have_text("live")
    # An API refusal is said in words: the same sku twice.
    await add_product(page, "tea", "Green tea", "12.5", "10")
    await expect(page.get_by_test_id("product-row")).to_have_count(1)
    await expect(page.get_by_test_id("product-sku")).to_have_value("")  # the form was reset
    await add_product(page, "tea", "Green tea", "12.5", "10")
    await expect(page.locator("#product-msg")).to_have_text(
        "A product with that SKU is listed already."
    )
    await expect(page.get_by_test_id("product-row")).to_have_count(1)
    await expect(page.get_by_test_id("product-row")).to_contain_text("12.50")
    # Kept in this browser: the start page lists the stream, and the console opens
    # from a bare address, putting the token back into the fragment only.
    await page.goto("/")
    await expect(page.get_by_test_id("my-streams")).to_contain_text("Keys")
    await page.goto(f"/host/{s['id']}")
    await expect(page.get_by_test_id("connection-state")).to_have_text("live")
    assert page.url.endswith(f"#token={s['host_token']}")
    await expect(page.get_by_test_id("stream-ended")).to_be_hidden()
    assert not [t for t in proxy.request_targets() if s["host_token"] in t]
    await ctx.close()
