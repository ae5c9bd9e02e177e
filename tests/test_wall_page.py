"""The wall display page in real headless Chromium: the wall site's join link opens /wall, which
plays the wall output (getStats framesDecoded rising), hides its overlay while playing and shows
it again when the server goes away; the operator page's preview plays the same output."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from browser_support import FAKE_DEVICE_ARGS, chromium
from playwright.async_api import BrowserContext, Page, expect

from web.app import Huishang

CHROMIUM_ARGS = FAKE_DEVICE_ARGS
expect.set_options(timeout=20_000)

FRAMES_DECODED = """async (selector) => {
  const player = window.huishangWall;
  const pc = player && player.link.pc;
  if (!pc) return 0;
  let frames = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
  });
  return frames;
}"""


@pytest_asyncio.fixture
async def context(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with chromium(str(tmp_path / "profile"), CHROMIUM_ARGS, locale="zh-CN") as context:
        yield context


async def frames_decoded(page: Page) -> int:
    return int(await page.evaluate(FRAMES_DECODED))


async def wait_frames_above(page: Page, count: int) -> int:
    for _ in range(100):
        frames = await frames_decoded(page)
        if frames > count:
            return frames
        await page.wait_for_timeout(200)
    raise AssertionError(f"framesDecoded stayed at {count}")


async def test_the_wall_page_plays_and_shows_the_overlay_when_the_server_stops(
    context: BrowserContext, server: Huishang
) -> None:
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(server.join_url("tianhe.wall"))
    assert "/wall?token=" in page.url
    overlay = page.locator('[data-testid="overlay"]')
    await expect(overlay).to_be_hidden()  # playing
    first = await wait_frames_above(page, 0)
    later = await wait_frames_above(page, first + 10)  # frames keep coming
    assert later > first
    await expect(page.locator('[data-testid="site"]')).to_contain_text("指挥大厅大屏")
    assert await page.locator('[data-testid="wall-video"]').get_attribute("data-status") == (
        "playing"
    )
    await server.close()
    await expect(overlay).to_be_visible()
    await expect(overlay).not_to_have_attribute("data-status", "playing")
    assert not errors, errors


async def test_the_wall_page_rejoins_by_itself_after_a_signalling_restart(
    context: BrowserContext, server: Huishang
) -> None:
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(server.join_url("tianhe.wall"))
    overlay = page.locator('[data-testid="overlay"]')
    await expect(overlay).to_be_hidden()
    first_pc = await page.evaluate("() => window.huishangWall.link.generation")
    await server.signalling.close()  # every socket drops; media sessions end with them
    await expect(overlay).to_be_visible()
    await server.signalling.start()  # /api/info names the new port; the page rediscovers it
    await expect(overlay).to_be_hidden(timeout=40_000)
    assert await page.evaluate("() => window.huishangWall.link.generation") > first_pc
    frames = await wait_frames_above(page, 0)  # the new peer connection decodes
    await wait_frames_above(page, frames + 10)
    assert not errors, errors


async def test_a_bad_token_shows_why(context: BrowserContext, server: Huishang) -> None:
    page = await context.new_page()
    await page.goto(f"{server.web_url}/wall?token=wrong")
    overlay = page.locator('[data-testid="overlay"]')
    await expect(overlay).to_have_attribute("data-status", "stopped")
    await expect(page.locator('[data-testid="status"]')).to_contain_text("令牌无效")


async def test_the_operator_preview_plays_the_wall(
    context: BrowserContext, server: Huishang
) -> None:
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(server.join_url("tianhe.operator"))
    preview = page.locator('[data-testid="preview"]')
    await expect(preview).to_have_attribute("data-status", "playing")
    await expect(page.locator("#preview-empty")).to_be_hidden()
    width = await preview.evaluate("(v) => v.videoWidth")
    assert width == 1920
    assert not errors, errors
