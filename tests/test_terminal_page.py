"""The terminal page (signalling part) in real headless Chromium: one-click join from the
printed link, raise a hand, answer the roll call, mute self, follow the floor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from browser_support import CHROMIUM, FAKE_DEVICE_ARGS
from playwright.async_api import Page, async_playwright, expect

from signalling.client import Client
from web.app import Huishang

CHROMIUM_ARGS = FAKE_DEVICE_ARGS
expect.set_options(timeout=10_000)


@pytest_asyncio.fixture
async def page(tmp_path: Path, server: Huishang) -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            locale="zh-CN",
        )
        try:
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
            assert not errors, errors
        finally:
            await context.close()


def by(page: Page, testid: str):  # type: ignore[no-untyped-def]
    return page.locator(f'[data-testid="{testid}"]')


async def test_terminal_joins_in_one_click_and_takes_part(page: Page, server: Huishang) -> None:
    await page.goto(server.join_url("tianhe.zhuji"))
    assert "/terminal?token=" in page.url
    await expect(by(page, "link")).to_have_attribute("data-state", "online")
    await expect(by(page, "site-name")).to_have_text("珠吉街")
    token = server.token_for("tianhe")  # type: ignore[arg-type]
    assert token is not None
    chair = await Client.connect(server.signalling_url, token)
    # Raise a hand: the chair sees it in the queue.
    await by(page, "hand").click()
    event = await chair.next_event("hands", where=lambda e: e["queue"] == ["tianhe.zhuji"])
    assert event["queue"] == ["tianhe.zhuji"]
    await expect(by(page, "hand")).to_have_attribute("aria-pressed", "true")
    # Floor: the page labels the programme with the speaker.
    await chair.request({"type": "floor", "site": "tianhe.zhuji"})
    await expect(by(page, "programme-label")).to_contain_text("您正在发言")
    await expect(by(page, "hand")).to_have_attribute("aria-pressed", "false")
    await chair.request({"type": "floor", "site": None})
    await expect(by(page, "programme-label")).to_contain_text("天河区应急指挥中心")
    # Roll call: the present button shows only while this site is called.
    await expect(by(page, "present")).to_be_hidden()
    await chair.request(
        {"type": "rollcall", "action": "start", "sites": ["tianhe.zhuji", "tianhe.xiancun"]}
    )
    await expect(by(page, "present")).to_be_visible()
    await by(page, "present").click()
    done = await chair.next_event("rollcall", where=lambda e: "tianhe.zhuji" in e["state"]["acked"])
    assert done["state"]["current"] == "tianhe.xiancun"
    await expect(by(page, "present")).to_be_hidden()
    # Mute self, then the chair's mute cannot be lifted from the page.
    await by(page, "mute").click()
    await expect(by(page, "mute")).to_have_attribute("aria-pressed", "true")
    await by(page, "mute").click()
    await expect(by(page, "mute")).to_have_attribute("aria-pressed", "false")
    await chair.request({"type": "mute", "site": "tianhe.zhuji", "audio": True})
    await expect(by(page, "notice")).to_contain_text("主席已将您静音")
    await by(page, "mute").click()
    await expect(by(page, "notice")).to_contain_text("无权限")
    await expect(by(page, "mute")).to_have_attribute("aria-pressed", "true")
    await chair.close()


@pytest.mark.parametrize("token", ["", "wrong"])
async def test_terminal_with_a_bad_token_says_so(page: Page, server: Huishang, token: str) -> None:
    await page.goto(f"{server.web_url}/terminal?token={token}")
    await expect(by(page, "link")).to_have_attribute("data-state", "stopped")
    await expect(by(page, "link")).to_contain_text("令牌无效")
