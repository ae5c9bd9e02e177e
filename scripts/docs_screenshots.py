"""Reproducible documentation screenshots, taken in headless Chromium against the real server.

    .venv/bin/python scripts/docs_screenshots.py [--out docs]

Starts the server in-process with the demo configuration (fresh data directory, free ports),
joins the district centre ``tianhe`` and its 19 streets as publishing Python terminals (a
light :class:`signalling.source.TestPattern`: 320x180 at 5 fps, each showing its site's
name), has the operator load the shipped preset "全部街道" and set a banner, then saves:

- ``wall-19-streets.png``: the wall display page (``/wall``), every tile live;
- ``operator-page.png``: the operator page, its wall preview playing;
- ``chair-console.png``: the chair console, a street on the floor and two previews.

Each page is closed after its screenshot (Chromium decoding the 1080p wall in a background tab
costs a shared core). The chair console is tried twice: on a loaded machine its previews
can take longer than a minute to play.

Every page is 1920x1080 in Debian's Chromium (``/usr/bin/chromium``, Playwright's async API).
Waiting is generous (a shared 2-core machine); the script fails loudly when a page never plays.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

from playwright.async_api import BrowserContext, Page, ViewportSize, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from signalling.client import Client  # noqa: E402
from signalling.model import SiteId  # noqa: E402
from signalling.source import TestPattern  # noqa: E402
from signalling.terminal import MediaTerminal  # noqa: E402
from web.app import Huishang  # noqa: E402
from web.config import HuishangConfig, default_config_path, load_config  # noqa: E402

__all__ = ["main"]

logger = logging.getLogger(__name__)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT: ViewportSize = {"width": 1920, "height": 1080}
PRESET = "全部街道"
BANNER = "天河区防汛防台风视频会商"
DISTRICT = "tianhe"
OPERATOR = "tianhe.operator"
WALL = "tianhe.wall"

#: Frames decoded by the page's wall player (getStats, inbound video).
WALL_FRAMES = """async () => {
  const player = window.huishangWall;
  const pc = player && player.link.pc;
  if (!pc) return 0;
  let frames = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
  });
  return frames;
}"""

#: Frames shown so far by every <video> on the page that plays (per element).
VIDEO_FRAMES = """() => [...document.querySelectorAll("video")].map((v) => {
  const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
  return { id: v.id || v.dataset.testid || "", w: v.videoWidth,
           frames: q ? q.totalVideoFrames : 0 };
})"""


def demo_config(data_dir: Path) -> HuishangConfig:
    """The demo configuration on free ports, with a fresh data directory."""
    config = load_config(default_config_path(), data_dir_override=data_dir)
    return dataclasses.replace(
        config,
        web=dataclasses.replace(config.web, port=0),
        signalling=dataclasses.replace(config.signalling, port=0),
    )


class Sites:
    """The publishing terminals: the district centre and its streets."""

    def __init__(self, app: Huishang) -> None:
        self.app = app
        self.terminals: dict[str, MediaTerminal] = {}

    async def join(self, site_id: str, name: str) -> None:
        token = self.app.token_for(SiteId(site_id))
        if token is None:
            raise RuntimeError(f"the demo configuration has no token for {site_id}")
        client = await Client.connect(self.app.signalling_url, token, client_name="docs-shots")
        terminal = MediaTerminal(client, video=TestPattern(name, width=320, height=180, fps=5))
        self.terminals[site_id] = terminal
        await terminal.start()

    async def leave(self, site_id: str) -> None:
        terminal = self.terminals.pop(site_id, None)
        if terminal is not None:
            await terminal.close()
            with contextlib.suppress(Exception):
                await terminal.client.close()

    async def close(self) -> None:
        for site_id in list(self.terminals):
            with contextlib.suppress(Exception):
                await self.leave(site_id)


async def wait_for(page: Page, script: str, test: str, what: str, timeout_s: float) -> None:
    """Poll ``script`` on ``page`` until the JS expression ``test`` (of ``r``) holds."""
    deadline = time.monotonic() + timeout_s
    check = f"async () => {{ const r = await ({script})(); return [{test}, r]; }}"
    seen = None
    while time.monotonic() < deadline:
        ok, seen = await page.evaluate(check)
        if ok:
            return
        await page.wait_for_timeout(250)
    with contextlib.suppress(Exception):
        await page.screenshot(path=str(Path(tempfile.gettempdir()) / "docs-shots-failed.png"))
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s (last seen: {seen})")


async def settle(page: Page, errors: list[str]) -> None:
    """Scroll back to the top and let the info notices fade (5 s); error notices are kept
    and reported as page errors."""
    await page.evaluate("window.scrollTo(0, 0)")
    notices = page.locator('[data-testid="notice"]')
    failures = page.locator('[data-testid="notice"][data-kind="error"]')
    errors.extend(f"notice: {text}" for text in await failures.all_inner_texts())
    for close in await page.locator('[data-testid="notice"] .notice-close').all():
        with contextlib.suppress(Exception):
            await close.click(timeout=1_000)
    for _ in range(40):
        if await notices.count() == 0:
            break
        await page.wait_for_timeout(250)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.wait_for_timeout(1_500)


async def new_page(context: BrowserContext, errors: list[str]) -> Page:
    page = await context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


async def shoot_wall(context: BrowserContext, app: Huishang, out: Path, errors: list[str]) -> None:
    page = await new_page(context, errors)
    await page.goto(app.join_url(WALL))
    await page.locator('[data-testid="overlay"]').wait_for(state="hidden", timeout=60_000)
    await wait_for(page, WALL_FRAMES, "r > 0", "the wall decodes", 60)
    first = int(await page.evaluate(WALL_FRAMES))
    await wait_for(page, WALL_FRAMES, f"r > {first + 30}", "the wall keeps playing", 60)
    await page.wait_for_timeout(6_000)  # every feed's keyframe reaches the compositor
    await page.screenshot(path=str(out / "wall-19-streets.png"))
    logger.info("saved %s", out / "wall-19-streets.png")
    logger.info("wall: %s frames decoded", await page.evaluate(WALL_FRAMES))
    await page.close()  # Chromium decoding 1080p in a background tab costs a shared core


async def shoot_operator(
    context: BrowserContext, app: Huishang, out: Path, errors: list[str]
) -> None:
    page = await new_page(context, errors)
    await page.goto(app.join_url(OPERATOR))
    preview = page.locator('[data-testid="preview"]')
    await preview.wait_for(state="visible", timeout=60_000)
    deadline = time.monotonic() + 60
    while await preview.get_attribute("data-status") != "playing":
        if time.monotonic() > deadline:
            raise TimeoutError("the operator preview never played")
        await page.wait_for_timeout(250)
    await wait_for(
        page, VIDEO_FRAMES, "r.some((v) => v.w > 0 && v.frames > 20)", "operator preview", 60
    )
    await settle(page, errors)
    await page.screenshot(path=str(out / "operator-page.png"))
    logger.info("saved %s", out / "operator-page.png")
    await page.close()


async def shoot_chair(
    context: BrowserContext, app: Huishang, sites: Sites, out: Path, errors: list[str]
) -> None:
    # The console joins as the district centre itself (a rejoin replaces the Python
    # terminal's session): stop the Python one first, the page publishes Chromium's camera.
    await sites.leave(DISTRICT)
    page = await new_page(context, errors)
    try:
        await page.goto(app.join_url(DISTRICT))
        roster = page.locator('[data-testid="roster"]')
        await roster.locator('[data-site="tianhe.zhuji"]').wait_for(timeout=30_000)

        def row(site_id: str) -> str:
            return f'[data-testid="roster"] [data-site="{site_id}"]'

        # Previews need the console's own media session (its extra receive slots) first.
        await page.locator('[data-testid="media-state"][data-state="connected"]').wait_for(
            timeout=60_000
        )
        floor = page.locator('[data-testid="floor-name"]')
        if "珠吉街" not in await floor.inner_text():  # a second try finds it given already
            await page.locator(f'{row("tianhe.zhuji")} [data-action="floor"]').click()
        await page.locator('[data-testid="floor-name"]').filter(has_text="珠吉街").wait_for()
        for site_id in ("tianhe.liede", "tianhe.shipai"):
            await page.locator(f'{row(site_id)} [data-action="preview"]').click()
            await (
                page.locator('[data-testid^="preview-label-"]')
                .filter(has_text=app.site(site_id).name)
                .wait_for(timeout=30_000)
            )
        await wait_for(
            page,
            VIDEO_FRAMES,
            "r.filter((v) => v.w > 0 && v.frames > 5).length >= 3",  # programme and 2 previews
            "chair console videos",
            60,
        )
        await settle(page, errors)
        await page.screenshot(path=str(out / "chair-console.png"))
        logger.info("saved %s", out / "chair-console.png")
    finally:
        await page.close()


class LoopLag:
    """Watches the event loop's lag (server, terminals and Playwright share it): a starved
    loop answers ICE consent checks late, and peers drop after 30 s (RFC 7675)."""

    def __init__(self, period_s: float = 0.2) -> None:
        self.period_s = period_s
        self.worst_s = 0.0
        self.over_1s = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="docs-shots-loop-lag")

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.period_s)
            lag = time.monotonic() - before - self.period_s
            self.worst_s = max(self.worst_s, lag)
            if lag > 1.0:
                self.over_1s += 1
                logger.warning("event loop stalled for %.1f s", lag)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        logger.info("event loop: worst lag %.2f s, %d stalls over 1 s", self.worst_s, self.over_1s)


async def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lag = LoopLag()
    lag.start()
    with tempfile.TemporaryDirectory(prefix="huishang-shots-") as tmp:
        app = await Huishang.open(config=demo_config(Path(tmp) / "data"))
        sites = Sites(app)
        errors: list[str] = []
        try:
            district = app.site(DISTRICT)
            streets = [
                s
                for s in app.conference.sites.values()
                if s.level == "street" and s.parent == district.id
            ]
            logger.info("joining %s and %d streets", district.name, len(streets))
            await sites.join(district.id, district.name)
            for street in streets:
                await sites.join(street.id, street.name)
            operator = await Client.connect(
                app.signalling_url, app.token_for(SiteId(OPERATOR)) or "", client_name="docs-shots"
            )
            try:
                await operator.request({"type": "preset_load", "name": PRESET})
                await operator.request({"type": "banner", "text": BANNER})
            finally:
                await operator.close()
            async with async_playwright() as playwright:
                context = await playwright.chromium.launch_persistent_context(
                    str(Path(tmp) / "profile"),
                    executable_path=CHROMIUM,
                    headless=True,
                    args=CHROMIUM_ARGS,
                    locale="zh-CN",
                    viewport=VIEWPORT,
                )
                try:
                    await shoot_wall(context, app, out, errors)
                    await shoot_operator(context, app, out, errors)
                    for attempt in (1, 2):
                        try:
                            await shoot_chair(context, app, sites, out, errors)
                            break
                        except (TimeoutError, PlaywrightTimeout):
                            if attempt == 2:
                                raise
                            logger.exception("chair console: trying once more")
                finally:
                    await context.close()
        finally:
            await sites.close()
            await app.close()
            await lag.stop()
    if errors:
        raise RuntimeError(f"page errors: {errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(args.out))


if __name__ == "__main__":
    main()
