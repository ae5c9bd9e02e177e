"""The operations status page (web/static/status.html) in real headless Chromium.

It polls ``GET /api/status`` (no token); here it refreshes every second (``?every=1``) and the
test watches terminals come and go, and link quality appear, on the page.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from types import MappingProxyType

import pytest
import pytest_asyncio
from browser_support import BASE_ARGS, chromium
from playwright.async_api import BrowserContext, Page, expect

from signalling.client import Client
from signalling.model import SiteId
from web.app import Huishang
from web.config import CameraSettings, HuishangConfig, UplinkSettings

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM_ARGS = BASE_ARGS

expect.set_options(timeout=10_000)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    async with chromium(
        str(profile), CHROMIUM_ARGS, viewport={"width": 1600, "height": 1000}
    ) as context:
        yield context


@pytest_asyncio.fixture(loop_scope="module")
async def app(demo_config: HuishangConfig) -> AsyncIterator[Huishang]:
    server = await Huishang.open(config=demo_config)
    try:
        yield server
    finally:
        await server.close()


@pytest_asyncio.fixture(loop_scope="module")
async def status(browser: BrowserContext, app: Huishang) -> AsyncIterator[Page]:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{app.web_url}/status?every=1")
    await expect(page.get_by_test_id("count-total")).to_have_text(str(len(app.config.sites)))
    try:
        yield page
    finally:
        await page.close()
    assert not errors, f"the status page raised JavaScript errors: {errors}"


async def join(app: Huishang, site_id: str) -> Client:
    token = app.config.demo_tokens[SiteId(site_id)]
    return await Client.connect(app.signalling_url, token, client_name="test-terminal")


async def test_lists_online_sites_and_flags_the_ones_that_drop(
    status: Page, app: Huishang, tmp_path: Path
) -> None:
    zhuji = await join(app, "tianhe.zhuji")
    xiancun = await join(app, "tianhe.xiancun")
    try:
        for site in ("tianhe.zhuji", "tianhe.xiancun"):
            await expect(status.locator(f'tr[data-site="{site}"]')).to_have_attribute(
                "data-state", "online"
            )
        await expect(status.locator('tr[data-site="tianhe.zhuji"]')).to_contain_text("珠吉街")
        await expect(status.get_by_test_id("count-online")).to_have_text("2")
        await expect(status.get_by_test_id("alarms")).to_be_hidden()
        never = status.locator('tr[data-site="tianhe.liede"]')
        await expect(never).to_have_attribute("data-state", "never")

        await xiancun.close()  # leaves: offline, and it had joined, so it is an alarm
        dropped = status.locator('tr[data-site="tianhe.xiancun"]')
        await expect(dropped).to_have_attribute("data-state", "dropped")
        await expect(dropped).to_contain_class("alarm")
        await expect(status.get_by_test_id("count-online")).to_have_text("1")
        await expect(status.get_by_test_id("count-dropped")).to_have_text("1")
        await expect(status.get_by_test_id("alarms")).to_be_visible()
        await expect(status.get_by_test_id("alarm-list")).to_contain_text("冼村街")
        # The dropped site stands out: its row is painted differently from an online one.
        colors = await status.evaluate(
            """() => ["tianhe.xiancun", "tianhe.zhuji"].map(id => getComputedStyle(
                document.querySelector(`tr[data-site="${id}"]`)).backgroundColor)"""
        )
        assert colors[0] != colors[1]

        await status.get_by_test_id("show").select_option("online")
        await expect(dropped).to_be_hidden()
        await expect(status.locator('tr[data-site="tianhe.zhuji"]')).to_be_visible()
        await status.screenshot(path=str(tmp_path / "status-page.png"))
    finally:
        await zhuji.close()
        await xiancun.close()


async def test_shows_link_quality_when_the_media_plane_reports_it(
    status: Page, app: Huishang
) -> None:
    liede = await join(app, "tianhe.liede")
    try:
        liede_row = status.locator('tr[data-site="tianhe.liede"]')
        await expect(liede_row).to_have_attribute("data-state", "online")
        await expect(liede_row.locator("td.rtt")).to_have_text("—")
        app.conference.set_link(SiteId("tianhe.liede"), rtt_ms=480.0, loss=0.1, kbps=850.0)
        await expect(liede_row.locator("td.rtt")).to_have_text("480 ms")
        await expect(liede_row.locator("td.loss")).to_have_text("10.0 %")
        await expect(liede_row.locator("td.kbps")).to_have_text("850 kbps")
        await expect(liede_row.locator("td.rtt")).to_contain_class("q-bad")
        await expect(status.get_by_test_id("count-link")).to_have_text("1")
    finally:
        await liede.close()


async def test_shows_why_a_camera_is_offline(
    browser: BrowserContext, demo_config: HuishangConfig
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cam = SiteId("tianhe.cam1")
    cameras = MappingProxyType({cam: CameraSettings(rtsp_url=f"rtsp://127.0.0.1:{port}/cam1")})
    server = await Huishang.open(config=dataclasses.replace(demo_config, cameras=cameras))
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    operator = await Client.connect(
        server.signalling_url, server.config.demo_tokens[SiteId("tianhe.operator")]
    )
    try:
        await page.goto(f"{server.web_url}/status?every=1")
        await expect(page.get_by_test_id("cameras")).to_be_visible()
        row = page.locator('tr[data-camera="tianhe.cam1"]')
        await expect(row).to_have_attribute("data-state", "idle")
        await expect(row).to_contain_text("天河路口监控")
        await expect(row.locator("td.reason")).to_contain_text("not shown, not pulled")
        layout = {"output": "wall", "kind": "1", "tiles": [{"source": "tianhe.cam1"}]}
        await operator.request({"type": "layout", "layout": layout})  # on the wall: pulled
        await expect(row.locator("td.reason")).to_contain_text("connection refused")
        await expect(row.locator("td.reason")).to_contain_text("连接被拒绝")
        await expect(row).to_have_attribute("data-state", "retrying")
        colors = await page.evaluate(
            """() => getComputedStyle(document.querySelector(
                'tr[data-camera="tianhe.cam1"]')).backgroundColor"""
        )
        assert colors not in ("rgba(0, 0, 0, 0)", "transparent")  # a failing camera stands out
        await expect(page.get_by_test_id("camera-summary")).to_contain_text("failing 1")
    finally:
        await operator.close()
        await page.close()
        await server.close()
    assert not errors, f"the status page raised JavaScript errors: {errors}"


async def test_shows_the_uplink_and_why_it_is_down(
    browser: BrowserContext, demo_config: HuishangConfig
) -> None:
    with socket.socket() as sock:  # an upper level that is not there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uplink = UplinkSettings(
        url=f"ws://127.0.0.1:{port}/", token="x", site=SiteId("tianhe.uplink"), retry_max_s=2.0
    )
    server = await Huishang.open(config=dataclasses.replace(demo_config, uplink=uplink))
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await page.goto(f"{server.web_url}/status?every=1")
        section = page.get_by_test_id("uplink")
        await expect(section).to_be_visible()
        await expect(section).to_have_attribute("data-state", "waiting")
        await expect(page.get_by_test_id("uplink-state")).to_contain_text("重连中")
        await expect(page.get_by_test_id("uplink-detail")).to_contain_text("last error")
        await expect(page.get_by_test_id("uplink-upper")).to_contain_text(f"127.0.0.1:{port}")
    finally:
        await page.close()
        await server.close()
    assert not errors, f"the status page raised JavaScript errors: {errors}"


async def test_has_no_uplink_section_without_an_uplink(status: Page) -> None:
    await expect(status.get_by_test_id("count-online")).to_be_visible()
    await status.wait_for_timeout(1500)  # a refresh or two
    await expect(status.get_by_test_id("uplink")).to_be_hidden()


async def test_says_so_when_the_server_cannot_be_reached(status: Page, app: Huishang) -> None:
    await expect(status.get_by_test_id("updated")).to_have_attribute("data-stale", "false")
    await app.close()
    await expect(status.get_by_test_id("updated")).to_have_attribute("data-stale", "true")
    await expect(status.get_by_test_id("updated")).to_contain_text("cannot reach")
