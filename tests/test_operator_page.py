"""The wall operator's page (web/static/operator.html) in real headless Chromium.

ARCHITECTURE.md, Testing: Debian's Chromium driven by Playwright (never ``playwright install``),
the real server on free loopback ports, real clients as :class:`signalling.client.Client`.
What the operator does on the page must reach other sites as the protocol's events
(PROTOCOL.md, Conference control) — here the wall PC ``tianhe.wall``, connected as a client —
and what the server says (its ``layout`` event is the truth) must show on the page.

One browser for the module, one fresh server per test (a persistent context on a fresh
profile, as in test_chair_console.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from browser_support import FAKE_DEVICE_ARGS, chromium
from playwright.async_api import BrowserContext, Page, expect

from bridge.compositor import CompositorConfig, canvas_tile_rects
from signalling.client import Client
from signalling.model import SiteId
from web.app import Huishang
from web.config import HuishangConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM_ARGS = FAKE_DEVICE_ARGS
ROSTER = '[data-testid="roster"]'
WALL = '[data-testid="wall"]'
DOCS = Path(__file__).resolve().parent.parent / "docs"

expect.set_options(timeout=10_000)  # a shared, noisy 2-core machine: generous, never asserted

Connect = Callable[[str], Awaitable[Client]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    async with chromium(
        str(profile), CHROMIUM_ARGS, viewport={"width": 1920, "height": 1080}, locale="zh-CN"
    ) as context:
        yield context


@pytest_asyncio.fixture(loop_scope="module")
async def app(demo_config: HuishangConfig) -> AsyncIterator[Huishang]:
    """The real server (web + signalling) on free loopback ports, fresh data directory."""
    server = await Huishang.open(config=demo_config)
    try:
        yield server
    finally:
        await server.close()


@pytest_asyncio.fixture(loop_scope="module")
async def join(app: Huishang) -> AsyncIterator[Connect]:
    """Connect demo sites as Python clients; all of them leave at the end."""
    clients: list[Client] = []

    async def connect(site_id: str) -> Client:
        token = app.config.demo_tokens[SiteId(site_id)]
        client = await Client.connect(app.signalling_url, token, client_name="test-client")
        clients.append(client)
        return client

    try:
        yield connect
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()


class PageErrors:
    """JavaScript errors the page raised (uncaught exceptions and console errors), less the
    ones a test provokes on purpose: the 400 Chromium logs when the geometry endpoint refuses
    a layout (:meth:`expect_refused_geometry`), failed connections while the signalling
    listener is down (:meth:`expect_network_failures`)."""

    REFUSED = ("Failed to load resource: the server responded with a status of 400",)
    NETWORK = ("WebSocket connection to", "Failed to load resource")

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.allowed: tuple[str, ...] = ()

    def expect_refused_geometry(self) -> None:
        self.allowed += self.REFUSED

    def expect_network_failures(self) -> None:
        self.allowed += self.NETWORK

    def console(self, kind: str, text: str) -> None:
        if kind == "error":
            self.seen.append(text)

    def unexpected(self) -> list[str]:
        return [e for e in self.seen if not e.startswith(self.allowed)]


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest_asyncio.fixture(loop_scope="module")
async def operator(
    browser: BrowserContext, app: Huishang, page_errors: PageErrors
) -> AsyncIterator[Page]:
    """The operator page opened from the operator's join link, connected, wall drawn."""
    page = await browser.new_page()
    page.on("pageerror", lambda exc: page_errors.seen.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: page_errors.console(msg.type, msg.text))
    await page.goto(app.join_url("tianhe.operator"))
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "online")
    await expect(page.locator(f"{WALL} [data-tile]")).to_have_count(1)  # the default layout
    try:
        yield page
    finally:
        # judge what the page raised while the test ran, not what closing it logs (a closing
        # page may report its socket and peer connection going away: a flaky teardown)
        unexpected = page_errors.unexpected()
        await page.close()
    assert not unexpected, f"the operator page raised errors: {page_errors.seen}"


def tile(page: Page, index: int) -> Any:
    return page.locator(f'{WALL} [data-tile="{index}"]')


def site_row(page: Page, site_id: str) -> Any:
    return page.locator(f'{ROSTER} [data-site="{site_id}"]')


def sources(app: Huishang) -> list[str | None]:
    return [t.source for t in app.conference.layouts["wall"].tiles]


async def pick_kind(page: Page, kind: str) -> None:
    await page.locator(f'[data-testid="layout-picker"] [data-kind="{kind}"]').click()
    await expect(page.locator(WALL)).to_have_attribute("data-kind", kind)


async def error_notice(page: Page, code: str) -> Any:
    notice = page.locator(f'[data-testid="notice"][data-kind="error"][data-code="{code}"]')
    await expect(notice.first).to_be_visible()
    return notice.first


# -- tests ----------------------------------------------------------------------------------


async def test_the_operator_join_link_opens_the_operator_page(
    operator: Page, app: Huishang
) -> None:
    assert operator.url.startswith(f"{app.web_url}/operator?token=")
    await expect(operator.get_by_test_id("title")).to_contain_text("大屏操作台")
    # The roster lists the sites that have a picture, grouped by street; not the wall itself.
    await expect(site_row(operator, "tianhe.zhuji")).to_contain_text("珠吉街")
    await expect(site_row(operator, "tianhe.cam1")).to_contain_text("天河路口监控")
    await expect(site_row(operator, "tianhe.wall")).to_have_count(0)
    await expect(site_row(operator, "tianhe.operator")).to_have_count(0)
    rows = operator.locator(f'{ROSTER} [data-group="tianhe.zhuji"] [data-site]')
    street = await rows.evaluate_all("rows => rows.map(r => r.dataset.site)")
    assert street == ["tianhe.zhuji", "tianhe.zhuji.c1", "tianhe.zhuji.c2", "tianhe.zhuji.c3"]
    # Searching narrows the roster.
    await operator.get_by_test_id("filter").fill("猎德")
    await expect(site_row(operator, "tianhe.liede")).to_be_visible()
    await expect(site_row(operator, "tianhe.zhuji")).to_be_hidden()
    await operator.get_by_test_id("filter").fill("")
    await expect(site_row(operator, "tianhe.zhuji")).to_be_visible()
    # The live preview has its place (filled once the wall output comes with the relay).
    await expect(operator.get_by_test_id("preview")).to_have_count(1)
    assert await operator.get_by_test_id("preview").evaluate("v => v.tagName") == "VIDEO"


async def test_the_shipped_presets_are_listed(operator: Page) -> None:
    names = operator.locator('[data-testid="preset-list"] [data-preset]')
    await expect(names).to_have_count(3)
    listed = await names.evaluate_all("items => items.map(i => i.dataset.preset)")
    assert set(listed) == {"全部街道", "指挥中心大屏 1+7", "四分屏"}


async def test_picking_a_kind_reaches_the_wall_and_tiles_match_the_compositor(
    operator: Page, app: Huishang, join: Connect
) -> None:
    wall = await join("tianhe.wall")
    await pick_kind(operator, "4")
    event = await wall.next_event("layout", timeout=10)
    assert event["layout"]["kind"] == "4" and len(event["layout"]["tiles"]) == 4
    await expect(operator.locator(f"{WALL} [data-tile]")).to_have_count(4)
    await expect(
        operator.locator('[data-testid="layout-picker"] [data-kind="4"]')
    ).to_have_attribute("aria-pressed", "true")
    # Tiles sit where the compositor puts them (proportionally, on the schematic).
    await pick_kind(operator, "1+7")
    assert (await wall.next_event("layout", timeout=10))["layout"]["kind"] == "1+7"
    await expect(operator.locator(f"{WALL} [data-tile]")).to_have_count(8)
    box = await operator.locator(WALL).bounding_box()
    assert box is not None
    for index, rect in enumerate(canvas_tile_rects(CompositorConfig(), "1+7")):
        got = await tile(operator, index).bounding_box()
        assert got is not None
        assert abs((got["x"] - box["x"]) / box["width"] - rect.x / 1920) < 0.01
        assert abs((got["y"] - box["y"]) / box["height"] - rect.y / 1080) < 0.01
        assert abs(got["width"] / box["width"] - rect.w / 1920) < 0.01
        assert abs(got["height"] / box["height"] - rect.h / 1080) < 0.01


async def test_drag_a_site_onto_a_tile_keeps_the_other_tiles(
    operator: Page, app: Huishang, join: Connect
) -> None:
    wall = await join("tianhe.wall")
    await join("tianhe.zhuji")
    await pick_kind(operator, "4")
    await wall.next_event("layout", timeout=10)
    await site_row(operator, "tianhe.liede").drag_to(tile(operator, 0))
    event = await wall.next_event("layout", timeout=10)
    assert [t["source"] for t in event["layout"]["tiles"]] == ["tianhe.liede", None, None, None]
    await site_row(operator, "tianhe.zhuji").drag_to(tile(operator, 2))
    event = await wall.next_event("layout", timeout=10)
    assert [t["source"] for t in event["layout"]["tiles"]] == [
        "tianhe.liede",
        None,
        "tianhe.zhuji",
        None,
    ]
    assert sources(app) == ["tianhe.liede", None, "tianhe.zhuji", None]
    await expect(tile(operator, 2)).to_have_attribute("data-source", "tianhe.zhuji")
    await expect(tile(operator, 2)).to_contain_text("珠吉街")
    await expect(tile(operator, 2)).to_have_attribute("data-online", "true")
    await expect(tile(operator, 0)).to_have_attribute("data-online", "false")  # 猎德街 is away
    # Drag one tile onto another: they swap.
    await tile(operator, 2).drag_to(tile(operator, 1))
    event = await wall.next_event("layout", timeout=10)
    assert [t["source"] for t in event["layout"]["tiles"]] == [
        "tianhe.liede",
        "tianhe.zhuji",
        None,
        None,
    ]
    # Clear a tile with its × button.
    await tile(operator, 0).hover()
    await tile(operator, 0).locator('[data-action="clear-tile"]').click()
    event = await wall.next_event("layout", timeout=10)
    assert [t["source"] for t in event["layout"]["tiles"]] == [None, "tianhe.zhuji", None, None]
    await expect(tile(operator, 0)).to_have_attribute("data-source", "")


async def test_tap_a_site_then_a_tile_for_touch_screens(
    operator: Page, app: Huishang, join: Connect
) -> None:
    wall = await join("tianhe.wall")
    await pick_kind(operator, "2")
    await wall.next_event("layout", timeout=10)
    await site_row(operator, "tianhe.xiancun").click()
    await expect(operator.get_by_test_id("armed")).to_be_visible()
    await expect(operator.get_by_test_id("armed")).to_contain_text("冼村街")
    await tile(operator, 1).click()
    event = await wall.next_event("layout", timeout=10)
    assert [t["source"] for t in event["layout"]["tiles"]] == [None, "tianhe.xiancun"]
    await expect(operator.get_by_test_id("armed")).to_be_hidden()
    await expect(operator.get_by_test_id("tile-source")).to_contain_text("冼村街")
    # Esc cancels a tapped site: clicking a tile then only selects it.
    await site_row(operator, "tianhe.shahe").click()
    await operator.keyboard.press("Escape")
    await expect(operator.get_by_test_id("armed")).to_be_hidden()
    await tile(operator, 0).click()
    await expect(operator.get_by_test_id("tile-panel")).to_have_attribute("data-tile", "0")
    assert sources(app) == [None, "tianhe.xiancun"]
    # The keyboard does the same: Enter on a site, Enter on a tile; Delete clears the tile.
    await site_row(operator, "tianhe.shahe").focus()
    await operator.keyboard.press("Enter")
    await tile(operator, 0).focus()
    await operator.keyboard.press("Enter")
    event = await wall.next_event("layout", timeout=10)
    assert [t["source"] for t in event["layout"]["tiles"]] == ["tianhe.shahe", "tianhe.xiancun"]
    await operator.keyboard.press("Delete")
    event = await wall.next_event("layout", timeout=10)
    assert [t["source"] for t in event["layout"]["tiles"]] == [None, "tianhe.xiancun"]


async def test_a_tile_poll_started_from_the_page_runs_on_the_server(
    operator: Page, app: Huishang, join: Connect
) -> None:
    wall = await join("tianhe.wall")
    await join("tianhe.zhuji")
    await join("tianhe.xiancun")
    await expect(site_row(operator, "tianhe.xiancun")).to_have_attribute("data-online", "true")
    await pick_kind(operator, "4")
    await wall.next_event("layout", timeout=10)
    await tile(operator, 1).click()
    await operator.get_by_test_id("poll-online-streets").click()
    chips = operator.locator('[data-testid="poll-list"] li')
    await expect(chips).to_have_count(2)
    await operator.get_by_test_id("poll-interval").fill("3")
    await operator.get_by_test_id("poll-start").click()
    started = await wall.next_event("poll", timeout=10)
    assert started["target"] == 1 and started["interval_s"] == 3
    assert started["sites"] == ["tianhe.zhuji", "tianhe.xiancun"]
    assert started["current"] == "tianhe.zhuji"
    polls = app.conference.snapshot()["polls"]
    assert [(p["target"], p["sites"]) for p in polls] == [(1, ["tianhe.zhuji", "tianhe.xiancun"])]
    await expect(tile(operator, 1)).to_have_attribute("data-polling", "true")
    await expect(tile(operator, 1)).to_have_attribute("data-source", "tianhe.zhuji")
    await expect(operator.get_by_test_id("poll-state")).to_contain_text("珠吉街")
    # The poll advances on its own (every 3 s): the wall's tile follows, so does the page.
    advanced = await wall.next_event("poll", timeout=15)
    assert advanced["current"] == "tianhe.xiancun"
    await expect(tile(operator, 1)).to_have_attribute("data-source", "tianhe.xiancun")
    await expect(operator.get_by_test_id("poll-state")).to_have_attribute(
        "data-current", "tianhe.xiancun"
    )
    await operator.get_by_test_id("poll-stop").click()
    stopped = await wall.next_event("poll", timeout=10, where=lambda e: e["sites"] == [])
    assert stopped["target"] == 1
    await expect(tile(operator, 1)).to_have_attribute("data-polling", "false")
    assert app.conference.snapshot()["polls"] == []


async def test_a_poll_interval_under_3_s_is_refused_with_a_notice(
    operator: Page, app: Huishang
) -> None:
    await operator.locator(f"{WALL} [data-tile]").first.click()
    await operator.get_by_test_id("poll-add").select_option("tianhe.liede")
    await operator.get_by_test_id("poll-add-button").click()
    await operator.get_by_test_id("poll-interval").fill("1")
    await operator.get_by_test_id("poll-start").click()
    notice = await error_notice(operator, "bad_request")
    await expect(notice).to_contain_text("interval_s")
    assert app.conference.snapshot()["polls"] == []


async def test_preset_save_then_load_restores_the_layout(
    operator: Page, app: Huishang, join: Connect
) -> None:
    wall = await join("tianhe.wall")
    await pick_kind(operator, "2")
    await wall.next_event("layout", timeout=10)
    await site_row(operator, "tianhe.shipai").drag_to(tile(operator, 0))
    await wall.next_event("layout", timeout=10)
    await operator.get_by_test_id("preset-name").fill("石牌两分屏")
    await operator.get_by_test_id("preset-save").click()
    presets = await wall.next_event("presets", timeout=10)
    assert "石牌两分屏" in presets["names"]
    saved = operator.locator('[data-preset="石牌两分屏"]')
    await expect(saved).to_have_count(1)  # the list follows the presets event
    # Something else on the wall, then the preset brings it back.
    await pick_kind(operator, "9")
    await wall.next_event("layout", timeout=10)
    await saved.locator('[data-action="preset-load"]').click()
    event = await wall.next_event("layout", timeout=10)
    assert event["layout"]["kind"] == "2"
    assert [t["source"] for t in event["layout"]["tiles"]] == ["tianhe.shipai", None]
    await expect(operator.locator(WALL)).to_have_attribute("data-kind", "2")
    await expect(tile(operator, 0)).to_contain_text("石牌街")
    # A shipped custom preset draws its own geometry.
    await operator.locator('[data-preset="全部街道"] [data-action="preset-load"]').click()
    assert (await wall.next_event("layout", timeout=10))["layout"]["kind"] == "custom"
    await expect(operator.locator(f"{WALL} [data-tile]")).to_have_count(20)
    await expect(tile(operator, 19)).to_contain_text("凤凰街")
    # Delete asks twice; the list follows the presets event (another operator sees it too).
    delete = saved.locator('[data-action="preset-delete"]')
    await delete.click()
    await expect(delete).to_have_attribute("data-confirm", "1")
    await delete.click()
    presets = await wall.next_event("presets", timeout=10)
    assert "石牌两分屏" not in presets["names"]
    await expect(saved).to_have_count(0)


async def test_presets_changed_elsewhere_show_live(operator: Page, join: Connect) -> None:
    chair = await join("tianhe")
    await chair.request({"type": "preset_save", "name": "主会场存的"})
    await expect(operator.locator('[data-preset="主会场存的"]')).to_have_count(1)
    await chair.request({"type": "preset_delete", "name": "四分屏"})
    await expect(operator.locator('[data-preset="四分屏"]')).to_have_count(0)


async def test_an_unknown_preset_shows_the_error_notice(operator: Page, app: Huishang) -> None:
    await operator.get_by_test_id("preset-name").fill("不存在的预设")
    await operator.get_by_test_id("preset-load-named").click()
    notice = await error_notice(operator, "not_found")
    await expect(notice).to_contain_text("不存在的预设")
    # Not blocking: the page keeps working.
    await pick_kind(operator, "4")
    await expect(operator.locator(f"{WALL} [data-tile]")).to_have_count(4)


async def test_an_overlapping_custom_layout_is_refused_and_the_wall_reverts(
    operator: Page, app: Huishang, join: Connect, page_errors: PageErrors
) -> None:
    page_errors.expect_refused_geometry()  # the schematic asks for the overlapping rects too
    wall = await join("tianhe.wall")
    await pick_kind(operator, "4")
    await wall.next_event("layout", timeout=10)
    await site_row(operator, "tianhe.zhuji").drag_to(tile(operator, 0))
    await wall.next_event("layout", timeout=10)
    await operator.get_by_test_id("custom-editor").locator("summary").click()
    await operator.get_by_test_id("custom-rects").fill("[0, 0, 0.6, 0.6],\n[0.5, 0.5, 0.5, 0.5]")
    await operator.get_by_test_id("custom-apply").click()
    notice = await error_notice(operator, "bad_request")
    await expect(notice).to_contain_text("overlap")
    # The schematic goes back to the server's layout; the wall never saw the refused one.
    await expect(operator.locator(WALL)).to_have_attribute("data-kind", "4")
    await expect(operator.locator(f"{WALL} [data-tile]")).to_have_count(4)
    await expect(tile(operator, 0)).to_have_attribute("data-source", "tianhe.zhuji")
    assert app.conference.layouts["wall"].kind == "4"
    # A valid custom layout goes through, keeping the sources in order.
    await operator.get_by_test_id("custom-rects").fill("[0, 0, 0.5, 1],\n[0.5, 0, 0.5, 0.5]")
    await operator.get_by_test_id("custom-apply").click()
    event = await wall.next_event(
        "layout", timeout=10, where=lambda e: e["layout"]["kind"] == "custom"
    )
    assert event["layout"]["tiles"] == [
        {"source": "tianhe.zhuji", "rect": [0, 0, 0.5, 1]},
        {"source": None, "rect": [0.5, 0, 0.5, 0.5]},
    ]
    await expect(operator.locator(f"{WALL} [data-tile]")).to_have_count(2)


async def test_banner_edit_reaches_a_client(operator: Page, app: Huishang, join: Connect) -> None:
    wall = await join("tianhe.wall")
    await operator.get_by_test_id("banner-input").fill("防汛防台风应急视频会商")
    await operator.get_by_test_id("banner-save").click()
    event = await wall.next_event("banner", timeout=10)
    assert event["text"] == "防汛防台风应急视频会商"
    assert app.conference.banner == "防汛防台风应急视频会商"
    # A banner set elsewhere (the chair) shows on the page.
    chair = await join("tianhe")
    await chair.request({"type": "banner", "text": "天河区三防工作会商"})
    await expect(operator.get_by_test_id("banner-input")).to_have_value("天河区三防工作会商")


async def test_tiles_follow_sites_going_online_and_offline(
    operator: Page, app: Huishang, join: Connect
) -> None:
    await operator.locator('[data-preset="四分屏"] [data-action="preset-load"]').click()
    await expect(operator.locator(WALL)).to_have_attribute("data-kind", "4")
    await expect(tile(operator, 1)).to_have_attribute("data-online", "false")
    zhuji = await join("tianhe.zhuji")
    await expect(tile(operator, 1)).to_have_attribute("data-online", "true")
    await expect(tile(operator, 1)).to_contain_text("在线")
    await zhuji.close()
    await expect(tile(operator, 1)).to_have_attribute("data-online", "false")
    await expect(tile(operator, 1)).to_contain_text("离线")


async def test_the_page_recovers_after_the_signalling_listener_restarts(
    operator: Page, app: Huishang, join: Connect, page_errors: PageErrors
) -> None:
    page_errors.expect_network_failures()  # retries while the listener is down fail, loudly
    await pick_kind(operator, "4")
    await app.signalling.close()  # every socket drops; the listener comes back on a new port
    await expect(operator.get_by_test_id("connection")).not_to_have_attribute(
        "data-state", "online"
    )
    await expect(operator.get_by_test_id("stale")).to_be_visible()
    # Meanwhile the wall changes elsewhere (the chair): the page must pick that up on return.
    await app.signalling.start()
    chair = await join("tianhe")
    await chair.request({"type": "layout", "layout": {"kind": "9", "tiles": []}})
    await expect(operator.get_by_test_id("connection")).to_have_attribute("data-state", "online")
    await expect(operator.locator(WALL)).to_have_attribute("data-kind", "9")
    await expect(operator.locator(f"{WALL} [data-tile]")).to_have_count(9)
    await expect(operator.get_by_test_id("stale")).to_be_hidden()
    # And it works again: a change from the page reaches the chair.
    await site_row(operator, "tianhe.liede").drag_to(tile(operator, 8))
    event = await chair.next_event(
        "layout", timeout=10, where=lambda e: e["layout"]["tiles"][-1]["source"] is not None
    )
    assert event["layout"]["kind"] == "9"
    assert event["layout"]["tiles"][8]["source"] == "tianhe.liede"


async def test_screenshot_with_several_sites_online(
    operator: Page, app: Huishang, join: Connect, tmp_path: Path
) -> None:
    for site in (
        "tianhe.zhuji",
        "tianhe.xiancun",
        "tianhe.liede",
        "tianhe.shahe",
        "tianhe.shipai",
        "tianhe.changxing",
        "tianhe.huangcun",
        "tianhe.linhe",
        "tianhe.wushan",
        "tianhe.yuancun",
        "tianhe.zhuji.c1",
        "tianhe.xiancun.c1",
        "tianhe.wall",
    ):
        await join(site)
    chair = await join("tianhe")
    await chair.request({"type": "banner", "text": "天河区防汛防台风视频会商"})
    await operator.locator('[data-preset="全部街道"] [data-action="preset-load"]').click()
    await expect(operator.locator(f"{WALL} [data-tile]")).to_have_count(20)
    # 凤凰街 is away: its tile polls three communities instead.
    await tile(operator, 19).click()
    for community in ("tianhe.zhuji.c1", "tianhe.xiancun.c1", "tianhe.liede.c1"):
        await operator.get_by_test_id("poll-add").select_option(community)
        await operator.get_by_test_id("poll-add-button").click()
    await operator.get_by_test_id("poll-interval").fill("15")
    await operator.get_by_test_id("poll-start").click()
    await expect(tile(operator, 19)).to_have_attribute("data-polling", "true")
    await expect(tile(operator, 19)).to_contain_text("珠村社区")
    await expect(tile(operator, 1)).to_have_attribute("data-online", "true")
    await operator.mouse.move(0, 0)
    shot = tmp_path / "operator-page.png"
    await operator.screenshot(path=str(shot))
    assert shot.stat().st_size > 50_000
    if os.environ.get("HUISHANG_WRITE_DOCS") == "1":  # refresh docs/operator-page.png
        shutil.copyfile(shot, DOCS / "operator-page.png")
