"""The chair console (web/static/chair.html) in real headless Chromium against the real server.

ARCHITECTURE.md, Testing: Debian's Chromium driven by Playwright (never ``playwright install``),
the real server on free loopback ports, real terminals as :class:`signalling.client.Client`.
Each test watches both ends: what the chair clicks must arrive at a terminal as the protocol's
event (PROTOCOL.md, Conference control), and what terminals do must show on the page.

One browser for the module, one fresh server per test. Playwright's ``launch`` refuses a
``--user-data-dir`` argument, so the module's browser is a persistent context on a fresh
profile directory, which is the same thing.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from browser_support import FAKE_DEVICE_ARGS, chromium
from playwright.async_api import BrowserContext, Page, expect

from signalling.client import Client
from signalling.model import SiteId
from web.app import Huishang
from web.config import HuishangConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHROMIUM_ARGS = FAKE_DEVICE_ARGS
ROSTER = '[data-testid="roster"]'

expect.set_options(timeout=10_000)  # a shared, noisy 2-core machine: generous, never asserted

Connect = Callable[[str], Awaitable[Client]]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    async with chromium(
        str(profile), CHROMIUM_ARGS, viewport={"width": 1600, "height": 1000}, locale="zh-CN"
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
async def terminal(app: Huishang) -> AsyncIterator[Connect]:
    """Connect demo sites as Python terminal clients; all of them leave at the end."""
    clients: list[Client] = []

    async def connect(site_id: str) -> Client:
        token = app.config.demo_tokens[SiteId(site_id)]
        client = await Client.connect(app.signalling_url, token, client_name="test-terminal")
        clients.append(client)
        return client

    try:
        yield connect
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()


class PageErrors:
    """JavaScript errors a page raised (uncaught exceptions and console errors), less the
    network failures a test provokes on purpose (:meth:`expect_network_failures`)."""

    NETWORK = ("WebSocket connection to", "Failed to load resource")

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.network_failures_expected = False

    def expect_network_failures(self) -> None:
        self.network_failures_expected = True

    def console(self, kind: str, text: str) -> None:
        if kind == "error":
            self.seen.append(text)

    def unexpected(self) -> list[str]:
        if not self.network_failures_expected:
            return self.seen
        return [e for e in self.seen if not e.startswith(self.NETWORK)]


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest_asyncio.fixture(loop_scope="module")
async def console(
    browser: BrowserContext, app: Huishang, page_errors: PageErrors
) -> AsyncIterator[Page]:
    """The chair console opened from the chair's join link, connected."""
    page = await _open(browser, app.join_url("tianhe"), page_errors)
    await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "online")
    try:
        yield page
    finally:
        await page.close()
    assert not page_errors.unexpected(), f"the console raised errors: {page_errors.seen}"


async def _open(browser: BrowserContext, url: str, errors: PageErrors) -> Page:
    page = await browser.new_page()
    page.on("pageerror", lambda exc: errors.seen.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.console(msg.type, msg.text))
    await page.goto(url)
    return page


def row(page: Page, site_id: str) -> Any:
    return page.locator(f'{ROSTER} [data-site="{site_id}"]')


async def called_then_ack(client: Client) -> None:
    """A terminal that answers 到 when the roll call reaches it."""
    me = client.site["id"]
    await client.next_event("rollcall", where=lambda e: e["state"]["current"] == me)
    await client.request({"type": "rollcall_ack"})


# -- tests ----------------------------------------------------------------------------------


async def test_roster_shows_chinese_names_grouped_by_street(
    console: Page, terminal: Connect, tmp_path: Path
) -> None:
    for site in ("tianhe.zhuji", "tianhe.zhuji.c1", "tianhe.xiancun", "tianhe.liede"):
        await terminal(site)
    zhuji = row(console, "tianhe.zhuji")
    await expect(zhuji).to_have_attribute("data-online", "true")
    await expect(zhuji.locator(".name")).to_have_text("珠吉街")
    await expect(row(console, "tianhe.liede")).to_have_attribute("data-online", "true")
    await expect(console.get_by_test_id("online-count")).to_have_text("5")  # 4 + the chair
    await expect(console.get_by_test_id("title")).to_contain_text("天河区应急指挥中心")
    await expect(console.get_by_test_id("uplink")).to_be_hidden()  # no [uplink] in the demo
    camera = row(console, "tianhe.cam1")  # nothing shows the demo camera: idle, not offline
    await expect(camera.locator('[data-badge="camera"]')).to_contain_text("待调用")
    # Grouping: the command centre first, then each street followed by its communities.
    groups = await console.locator(f"{ROSTER} .group").evaluate_all(
        "cards => cards.map(c => c.dataset.group)"
    )
    assert groups[:3] == ["centre", "tianhe.zhuji", "tianhe.xiancun"]
    street = await console.locator(f'{ROSTER} [data-group="tianhe.zhuji"] .site').evaluate_all(
        "rows => rows.map(r => r.dataset.site)"
    )
    assert street == ["tianhe.zhuji", "tianhe.zhuji.c1", "tianhe.zhuji.c2", "tianhe.zhuji.c3"]
    await expect(row(console, "tianhe.zhuji.c2")).to_have_attribute("data-online", "false")
    await expect(row(console, "tianhe.zhuji.c2")).to_contain_text("未上线")
    # The glyphs really render: with no CJK font every character is the same "tofu" box, so two
    # different characters drawn in the roster's font would give identical pixels.
    distinct = await console.evaluate(
        """() => {
            const font = getComputedStyle(document.querySelector(".site .name")).fontFamily;
            const draw = (ch) => {
                const c = document.createElement("canvas");
                c.width = c.height = 64;
                const g = c.getContext("2d");
                g.font = `48px ${font}`;
                g.fillText(ch, 4, 52);
                return Array.from(g.getImageData(0, 0, 64, 64).data).join(",");
            };
            return [draw("珠") !== draw("吉"), draw("街") !== draw("冼")];
        }"""
    )
    assert distinct == [True, True]
    # Durations are measured on the server's clock (ping replies carry it): same host here.
    offset = await console.evaluate(
        """async () => (await import("/static/chair.js")).state.conn.clockOffsetS"""
    )
    assert abs(offset) < 5
    shot = tmp_path / "chair-console.png"
    await console.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000


async def test_give_floor_reaches_the_terminal_and_take_it_back(
    console: Page, terminal: Connect
) -> None:
    zhuji = await terminal("tianhe.zhuji")
    await expect(row(console, "tianhe.zhuji")).to_have_attribute("data-online", "true")
    await row(console, "tianhe.zhuji").locator('[data-action="floor"]').click()
    event = await zhuji.next_event("floor", timeout=10)
    assert event["site"] == "tianhe.zhuji"
    await expect(console.get_by_test_id("floor-name")).to_have_text("珠吉街")
    await expect(row(console, "tianhe.zhuji")).to_contain_class("on-floor")
    await console.get_by_test_id("floor-back").click()
    event = await zhuji.next_event("floor", timeout=10)
    assert event["site"] is None
    await expect(console.get_by_test_id("floor-name")).to_contain_text("主会场")
    await expect(row(console, "tianhe.zhuji").locator('[data-action="floor"]')).to_be_visible()


async def test_rollcall_progress_updates_live_as_terminals_ack(
    console: Page, terminal: Connect
) -> None:
    zhuji = await terminal("tianhe.zhuji")
    await terminal("tianhe.xiancun")  # will not answer: the chair moves on
    liede = await terminal("tianhe.liede")
    await expect(row(console, "tianhe.liede")).to_have_attribute("data-online", "true")
    panel = console.get_by_test_id("rollcall")
    await console.get_by_test_id("rollcall-start").click()  # scope: online sites
    await expect(panel).to_have_attribute("data-active", "true")
    await expect(console.get_by_test_id("rollcall-current")).to_contain_text("珠吉街")
    await expect(row(console, "tianhe.zhuji")).to_contain_class("called")
    await expect(console.get_by_test_id("rollcall-pending-count")).to_have_text("2")

    await called_then_ack(zhuji)
    await expect(console.get_by_test_id("rollcall-acked-count")).to_have_text("1")
    await expect(console.get_by_test_id("rollcall-acked")).to_have_text("珠吉街")
    await expect(console.get_by_test_id("rollcall-current")).to_contain_text("冼村街")
    await expect(row(console, "tianhe.xiancun")).to_contain_class("called")
    await expect(row(console, "tianhe.zhuji")).not_to_contain_class("called")

    await console.get_by_test_id("rollcall-next").click()  # 冼村街 does not answer
    await expect(console.get_by_test_id("rollcall-missed-count")).to_have_text("1")
    await expect(console.get_by_test_id("rollcall-missed")).to_have_text("冼村街")
    await called_then_ack(liede)
    await expect(panel).to_have_attribute("data-active", "false")
    await expect(console.get_by_test_id("rollcall-acked-count")).to_have_text("2")
    await expect(console.get_by_test_id("rollcall-pending-count")).to_have_text("0")
    await expect(console.get_by_test_id("rollcall-start")).to_be_enabled()
    assert await console.get_by_test_id("rollcall-progress").evaluate("p => p.value") == 3


async def test_raised_hand_shows_in_the_queue_and_the_chair_answers_it(
    console: Page, terminal: Connect
) -> None:
    c1 = await terminal("tianhe.zhuji.c1")
    liede = await terminal("tianhe.liede")
    await c1.request({"type": "hand", "up": True})
    await liede.request({"type": "hand", "up": True})
    hands = console.get_by_test_id("hands-list")
    await expect(hands.locator("li")).to_have_count(2)
    await expect(hands.locator("li").nth(0)).to_contain_text("珠村社区")
    await expect(hands.locator("li").nth(1)).to_contain_text("猎德街")
    await expect(row(console, "tianhe.zhuji.c1").locator('[data-badge="hand"]')).to_contain_text(
        "#1"
    )
    # Give the floor from the queue: the terminal gets it, its hand leaves the queue.
    await hands.locator('[data-site="tianhe.zhuji.c1"] [data-action="floor"]').click()
    assert (await c1.next_event("floor", timeout=10))["site"] == "tianhe.zhuji.c1"
    await expect(hands.locator("li")).to_have_count(1)
    await expect(console.get_by_test_id("hands-count")).to_have_text("1")
    # Lower the other hand: the terminal sees its own hand go down.
    await hands.locator('[data-site="tianhe.liede"] [data-action="lower-hand"]').click()
    down = await liede.next_event(
        "site",
        timeout=10,
        where=lambda e: e["site"]["id"] == "tianhe.liede" and not e["site"]["hand"],
    )
    assert down["site"]["hand"] is False
    await expect(hands.locator("li")).to_have_count(0)


async def test_mute_and_mute_all_reach_the_terminals(console: Page, terminal: Connect) -> None:
    xiancun = await terminal("tianhe.xiancun")
    shahe = await terminal("tianhe.shahe")
    await expect(row(console, "tianhe.shahe")).to_have_attribute("data-online", "true")
    await row(console, "tianhe.xiancun").locator('[data-action="mute"]').click()
    muted = await xiancun.next_event("muted", timeout=10)
    assert muted["audio"] is True and muted["by"] == "chair"
    await expect(row(console, "tianhe.xiancun").locator('[data-badge="muted"]')).to_be_visible()
    await row(console, "tianhe.xiancun").locator('[data-action="unmute"]').click()
    assert (await xiancun.next_event("muted", timeout=10))["audio"] is False
    await expect(row(console, "tianhe.xiancun").locator('[data-badge="muted"]')).to_have_count(0)

    await console.get_by_test_id("mute-all").click()
    assert (await shahe.next_event("muted", timeout=10))["audio"] is True
    assert (await xiancun.next_event("muted", timeout=10))["audio"] is True
    await expect(console.get_by_test_id("notices")).to_contain_text("已静音")
    await console.get_by_test_id("unmute-all").click()
    assert (await shahe.next_event("muted", timeout=10))["audio"] is False


async def test_server_error_shows_a_notice_and_the_console_keeps_working(
    console: Page, app: Huishang
) -> None:
    # The server refuses a banner over 200 characters (bad_request); the page does not pre-check.
    await console.get_by_test_id("banner-input").fill("突发事件" * 51)
    await console.get_by_test_id("banner-save").click()
    notice = console.locator('[data-testid="notice"][data-kind="error"]')
    await expect(notice).to_be_visible()
    await expect(notice).to_have_attribute("data-code", "bad_request")
    await expect(notice).to_contain_text("200")
    assert app.conference.banner == ""
    # Not blocking: the chair fixes the text and the update goes through.
    await console.get_by_test_id("banner-input").fill("台风应急会商")
    await console.get_by_test_id("banner-save").click()
    await expect(console.locator('[data-testid="notice"][data-kind="info"]')).to_contain_text(
        "会标已更新"
    )
    assert app.conference.banner == "台风应急会商"


async def test_recording_toggle_follows_the_server(console: Page, terminal: Connect) -> None:
    zhuji = await terminal("tianhe.zhuji")
    record = console.get_by_test_id("record")
    await record.click()
    assert (await zhuji.next_event("recording", timeout=10))["on"] is True
    await expect(record).to_have_attribute("aria-pressed", "true")
    await record.click()
    assert (await zhuji.next_event("recording", timeout=10))["on"] is False
    await expect(record).to_have_attribute("aria-pressed", "false")
    href = await console.get_by_test_id("attendance").get_attribute("href")
    assert href is not None and href.startswith("/api/attendance.csv?token=")


async def test_reconnects_after_the_signalling_listener_restarts(
    console: Page, app: Huishang, terminal: Connect, page_errors: PageErrors
) -> None:
    page_errors.expect_network_failures()  # retries while the listener is down fail, loudly
    await terminal("tianhe.zhuji")
    await expect(row(console, "tianhe.zhuji")).to_have_attribute("data-online", "true")
    await app.signalling.close()  # every socket drops; the listener comes back on a new port
    await expect(console.get_by_test_id("connection")).not_to_have_attribute("data-state", "online")
    await expect(console.get_by_test_id("stale")).to_be_visible()
    await app.signalling.start()  # /api/info now names the new port; the page rediscovers it
    await expect(console.get_by_test_id("connection")).to_have_attribute("data-state", "online")
    await expect(console.get_by_test_id("stale")).to_be_hidden()
    # The resumed session works: a terminal joining now shows up live.
    await terminal("tianhe.liede")
    await expect(row(console, "tianhe.liede")).to_have_attribute("data-online", "true")


async def test_a_second_console_replaces_the_first_which_stops(
    browser: BrowserContext, console: Page, app: Huishang
) -> None:
    errors = PageErrors()
    second = await _open(browser, app.join_url("tianhe"), errors)
    try:
        await expect(second.get_by_test_id("connection")).to_have_attribute("data-state", "online")
        await expect(console.get_by_test_id("fatal")).to_be_visible()
        await expect(console.get_by_test_id("fatal")).to_contain_text("已在别处登录")
        await expect(console.get_by_test_id("connection")).to_have_attribute(
            "data-state", "stopped"
        )
    finally:
        await second.close()
    assert not errors.unexpected()


async def test_invalid_token_stops_with_a_clear_message(
    browser: BrowserContext, app: Huishang
) -> None:
    page = await _open(browser, f"{app.web_url}/chair?token=not-a-token", PageErrors())
    try:
        await expect(page.get_by_test_id("fatal")).to_be_visible()
        await expect(page.get_by_test_id("fatal")).to_contain_text("令牌无效")
        await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "stopped")
    finally:
        await page.close()


async def test_floor_polling_from_the_console(console: Page, terminal: Connect) -> None:
    zhuji = await terminal("tianhe.zhuji")
    await terminal("tianhe.xiancun")
    await expect(row(console, "tianhe.xiancun")).to_have_attribute("data-online", "true")
    await console.get_by_test_id("poll-start").click()  # online streets, every 15 s
    assert (await zhuji.next_event("floor", timeout=10))["site"] == "tianhe.zhuji"
    polling = await zhuji.next_event("poll", timeout=10)
    assert polling["sites"] == ["tianhe.zhuji", "tianhe.xiancun"] and polling["target"] == "floor"
    await expect(console.get_by_test_id("poll-state")).to_have_attribute("data-active", "true")
    await expect(console.get_by_test_id("poll-state")).to_contain_text("珠吉街")
    await console.get_by_test_id("poll-stop").click()
    stopped = await zhuji.next_event("poll", timeout=10)
    assert stopped["sites"] == []
    await expect(console.get_by_test_id("poll-state")).to_have_attribute("data-active", "false")


async def test_attendance_link_downloads_the_csv(console: Page, terminal: Connect) -> None:
    await terminal("tianhe.zhuji")
    await expect(row(console, "tianhe.zhuji")).to_have_attribute("data-online", "true")
    href = await console.get_by_test_id("attendance").get_attribute("href")
    assert href is not None
    async with console.expect_download() as info:
        await console.get_by_test_id("attendance").click()
    download = await info.value
    assert download.suggested_filename.endswith(".csv")
    text = Path(await download.path()).read_text(encoding="utf-8-sig")
    assert "珠吉街" in text


async def test_recordings_list_with_a_working_download_link(
    console: Page, app: Huishang, terminal: Connect
) -> None:
    await terminal("tianhe.zhuji")
    recordings = console.get_by_test_id("recordings-list")
    await expect(console.get_by_test_id("recordings-empty")).to_be_visible()
    await console.get_by_test_id("record").click()
    writing = recordings.locator('li[data-state="recording"]')
    await expect(writing).to_have_count(1)  # listed while it is being written
    await expect(writing).to_contain_text("录制中")
    await console.wait_for_timeout(2000)  # some media to record
    await console.get_by_test_id("record").click()
    done = recordings.locator('li[data-state="done"]')
    await expect(done).to_have_count(1)
    await expect(console.get_by_test_id("recordings-count")).to_have_text("1")
    (entry,) = app.store.recordings()
    assert entry.ended_at is not None and entry.size > 0
    await expect(done.locator(".rec-file")).to_have_text(entry.file)
    size_mb = f"{entry.size / 1e6:.1f} MB" if entry.size >= 1e6 else "kB"
    await expect(done.get_by_test_id("recording-meta")).to_contain_text(size_mb)
    link = done.get_by_test_id("recording-download")
    href = await link.get_attribute("href")
    assert href is not None and href.startswith(f"/recordings/{entry.id}?token=")
    async with console.expect_download() as info:
        await link.click()
    download = await info.value
    assert download.suggested_filename == entry.file
    saved = Path(await download.path())
    assert saved.stat().st_size == entry.size
    assert saved.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a Matroska / WebM file


async def test_without_a_token_the_console_asks_for_one(
    browser: BrowserContext, app: Huishang, page_errors: PageErrors
) -> None:
    page = await _open(browser, f"{app.web_url}/chair", page_errors)
    try:
        await page.evaluate("sessionStorage.clear()")
        await page.reload()
        await expect(page.get_by_test_id("fatal")).to_be_visible()
        token = app.config.demo_tokens[SiteId("tianhe")]
        await page.get_by_test_id("token-input").fill(token)
        await page.get_by_test_id("token-input").press("Enter")
        await expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "online")
        await expect(page.get_by_test_id("fatal")).to_be_hidden()
        await expect(row(page, "tianhe.zhuji")).to_contain_text("珠吉街")
    finally:
        await page.close()
    assert not page_errors.unexpected()


# -- protocol.js on its own -------------------------------------------------------------------


async def test_protocol_js_backs_off_with_jitter_while_the_server_is_down(
    console: Page, page_errors: PageErrors
) -> None:
    page_errors.expect_network_failures()
    with socket.socket() as probe:  # a loopback port that nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    # A Connection pointed at a port nobody listens on: it must keep retrying, each wait
    # drawn from [50 %, 100 %] of min(max, base * 2^attempt). Only the drawn values are
    # checked, never how long anything took.
    states = await console.evaluate(
        """async (port) => {
            const { Connection } = await import("/static/protocol.js");
            const seen = [];
            const conn = new Connection({
                token: "x", signallingUrl: `ws://127.0.0.1:${port}/`, baseDelayMs: 20,
                maxDelayMs: 160, onState: (s) => seen.push({ ...s }),
            });
            conn._start().catch(() => {});
            while (seen.filter((s) => s.state === "offline").length < 6) {
                await new Promise((r) => setTimeout(r, 20));
            }
            let refused = null;
            try { await conn.request({ type: "ping" }); } catch (e) { refused = e.code; }
            conn.close();
            return { seen, refused, last: conn.state.state };
        }""",
        closed_port,
    )
    offline = [s for s in states["seen"] if s["state"] == "offline"][:6]
    for n, state in enumerate(offline):
        ceiling = min(160, 20 * 2**n)
        assert ceiling * 0.5 - 1 <= state["retryInMs"] <= ceiling, (n, state)
        assert state["reason"]
    assert states["refused"] == "offline"
    assert states["last"] == "stopped"
