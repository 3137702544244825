"""Group buys and referral links in a real browser (Debian's chromium through
Playwright) against the real service: the host offers a group of two and pays 10% to
referrers; viewer A opens a group and pays; viewer B (in Chinese) arrives through A's
share link and A's invite code, joins and pays; the group forms on both phones and the
host's referral report shows A with B's order."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pages_helpers import LAPTOP, PHONE, ServiceProcess, join, launch_chromium, page_errors
from playwright.async_api import expect

T = 20_000  # ms: the machine is shared and slow at times; every wait is for an event
expect.set_options(timeout=T)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    async with launch_chromium() as b:
        yield b


async def test_group_of_two_forms_and_the_referrer_earns(
    browser: Any, service: ServiceProcess
) -> None:
    # --- the host goes live, lists a product, offers a group buy and sets rates ---------
    host_ctx = await browser.new_context(**LAPTOP, base_url=service.url)
    host = await host_ctx.new_page()
    host_errors = page_errors(host)
    await host.goto("/")
    await host.get_by_test_id("title").fill("Group drop")
    await host.get_by_test_id("host-name").fill("Ann")
    await host.get_by_test_id("go-live").click()
    await host.wait_for_url(re.compile(r"/host/s_[0-9a-f]+#token="))
    sid = host.url.split("/host/")[1].split("#")[0]
    await expect(host.get_by_test_id("connection-state")).to_have_text("live")
    await host.get_by_test_id("product-sku").fill("tee")
    await host.get_by_test_id("product-title").fill("Plain tee")
    await host.get_by_test_id("product-price").fill("100")
    await host.get_by_test_id("product-stock").fill("20")
    await host.get_by_test_id("add-product").click()
    await expect(host.get_by_test_id("product-row")).to_have_count(1)

    await host.get_by_test_id("gb-sku").fill("tee")
    await host.get_by_test_id("gb-price").fill("80")
    await host.get_by_test_id("gb-size").fill("2")
    await host.get_by_test_id("gb-window").fill("600")
    await host.get_by_test_id("start-group-buy").click()
    await expect(host.get_by_test_id("group-buy-row")).to_have_count(1)
    await expect(host.get_by_test_id("group-buy-row")).to_contain_text("80.00")
    await host.get_by_test_id("commission-l1").fill("10")
    await host.get_by_test_id("commission-l2").fill("2")
    await host.get_by_test_id("save-commission").click()
    await expect(host.locator("#commission-msg")).to_have_text("Rates saved.")

    # --- viewer A opens a group and pays: group pending, in words ----------------------
    a_ctx = await browser.new_context(**PHONE, base_url=service.url)
    a = await a_ctx.new_page()
    a_errors = page_errors(a)
    await a.goto(f"/s/{sid}")
    await join(a, "Amy")
    await expect(a.get_by_test_id("group-price")).to_have_text("80.00")
    await a.get_by_test_id("start-group").click()
    progress_a = a.get_by_test_id("group-progress")
    await expect(progress_a).to_contain_text("1/2 joined, 0 paid")
    await expect(progress_a).to_contain_text(re.compile(r"\d+:\d\d left"))
    await a.get_by_test_id("pay").click()
    status_a = a.get_by_test_id("reservation-status")
    await expect(status_a).to_have_text("Paid — waiting for the group to form.")
    await expect(progress_a).to_contain_text("1 paid")
    share = await a.get_by_test_id("group-share-link").input_value()
    assert re.fullmatch(rf"{re.escape(service.url)}/s/{sid}\?group=[A-HJ-NP-Z2-9]{{8}}", share)
    await a.get_by_role("button", name="Invite friends").click()
    invite = a.get_by_test_id("referral-link")
    await expect(invite).to_have_value(re.compile(rf"/s/{sid}\?ref=[0-9a-f]+$"))
    ref = (await invite.input_value()).split("?ref=")[1]

    # --- viewer B (in Chinese) arrives by the share link and A's invite code, joins, pays -
    b_ctx = await browser.new_context(**PHONE)
    b = await b_ctx.new_page()
    b_errors = page_errors(b)
    await b.goto(f"{share}&ref={ref}&lang=zh")
    await join(b, "Bo")
    await expect(b.get_by_test_id("start-group")).to_be_hidden()
    await b.get_by_test_id("join-group").click()
    progress_b = b.get_by_test_id("group-progress")
    await expect(progress_b).to_contain_text("已有2/2人参团")
    await expect(progress_a).to_contain_text("2/2 joined")
    await b.get_by_test_id("pay").click()

    # --- the group forms on both phones ------------------------------------------------
    for progress, words in ((progress_a, "The group is formed — your order is paid."),
                            (progress_b, "拼团成功\uff0c你的订单已支付\u3002")):
        await expect(progress).to_have_attribute("data-status", "formed")
        await expect(progress).to_have_text(words)
    await expect(b.get_by_test_id("reservation-status")).to_contain_text("付款成功")
    await expect(status_a).to_contain_text("Paid")
    await expect(a.get_by_test_id("my-order-row")).to_have_attribute("data-status", "paid")

    # --- the host's referral report: A brought B, whose order earned A 10% ---------------
    row = host.get_by_test_id("referral-row")
    await expect(row).to_have_count(1)
    await expect(row.locator("td").nth(1)).to_have_text("1")
    await expect(row.locator("td").nth(2)).to_have_text("1")
    await expect(row.locator("td").nth(3)).to_have_text("80.00")
    await expect(row.locator("td").nth(4)).to_have_attribute("data-value", "800")
    assert host_errors == a_errors == b_errors == []
    for ctx in (host_ctx, a_ctx, b_ctx):
        await ctx.close()
