"""The browser side of ``pause`` ``video_limit`` (docs/protocol.md, Media): a terminal page
whose camera only small wall tiles show sends no more than they need, through
``RTCRtpSender.setParameters`` (W3C WebRTC: ``scaleResolutionDownBy``, ``maxFramerate``) and
without renegotiating; anything else that takes its video lifts the limit.

Real server on port 0, real headless Chromium with its synthetic camera (640x360 as the page
asks), the chair a signalling client with an aiortc receiver. What the page sends is read from
its own ``getStats()`` (outbound-rtp ``frameHeight``, ``framesPerSecond``) and
``getParameters()``; never a timing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCSessionDescription
from browser_support import FAKE_DEVICE_ARGS, chromium, until
from playwright.async_api import Page, expect

from bridge.testkit import LoopbackClient, wait_for
from signalling.client import Client
from web.app import Huishang

pytestmark = pytest.mark.timeout(180)
logger = logging.getLogger(__name__)
expect.set_options(timeout=20_000)  # shared, noisy machine: generous, never asserted

CHAIR, ZHUJI = "tianhe", "tianhe.zhuji"
CAPTURED = 360  # the terminal page asks its camera for 640x360

# What the page's camera sender sends and is set to: outbound-rtp video stats, encodings[0],
# the media link's own account, and whether a sender carries the camera now; read once the
# sender operations of the latest `pause` have ended.
SENT_JS = """async () => {
  const media = window.__huishang.media;
  await media.sendersSettled();
  const sender = media.senders.video;
  const out = {limit: media.videoLimit, encoding: media.videoEncoding, height: null, fps: null,
    frames: 0, sending: !!(sender && sender.track), params: null,
    captured: media.local.getVideoTracks()[0].getSettings().height};
  if (!sender) return out;
  const e = sender.getParameters().encodings[0];
  out.params = {scale: e.scaleResolutionDownBy ?? null, fps: e.maxFramerate ?? null};
  (await media.pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.height = s.frameHeight ?? null;
      out.fps = s.framesPerSecond ?? null;
      out.frames = s.framesEncoded || 0;
    }
  });
  return out;
}"""

# Hand the page's media link `pause` messages (as terminal.js does for each one), then wait
# until its senders have taken them up; the notices shown meanwhile come back.
PAUSES_JS = """async (wishes) => {
  const media = window.__huishang.media;
  const notices = [];
  const onNotice = media.onNotice;
  media.onNotice = (text, kind) => { notices.push(text); onNotice(text, kind); };
  try {
    for (const w of wishes) media.pause(w);
    await media.sendersSettled();
  } finally {
    media.onNotice = onNotice;
  }
  return notices;
}"""


@pytest.fixture
async def terminal(server: Huishang, tmp_path: Path) -> AsyncIterator[Page]:
    """珠吉街's terminal page, joined, with its media connected."""
    errors: list[str] = []
    async with chromium(
        str(tmp_path / "profile"),
        [*FAKE_DEVICE_ARGS, "--use-fake-device-for-media-stream=fps=30"],
        viewport={"width": 1024, "height": 700},
        locale="zh-CN",
    ) as context:
        page = context.pages[0] if context.pages else await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(server.join_url(ZHUJI))
        await expect(page.get_by_test_id("media-state")).to_have_attribute(
            "data-state", "connected"
        )
        # Keep the resolution when the CPU is short (a shared 2-core machine): Chromium's
        # default "balanced" adaptation would scale 360 lines to 270 on its own. A content
        # hint of "detail" makes it drop frames instead (W3C mst-content-hint), so the
        # heights seen are the limit's alone.
        await page.evaluate(
            "window.__huishang.media.local.getVideoTracks()[0].contentHint = 'detail'"
        )
        yield page
    assert not errors, errors


@pytest.fixture
async def chair(server: Huishang) -> AsyncIterator[Client]:
    """The chair as a signalling client whose programme (``main``) an aiortc peer receives:
    a slot that takes the floor holder's video."""
    token = server.token_for(CHAIR)  # type: ignore[arg-type]
    assert token is not None
    client = await Client.connect(server.signalling_url, token)
    media = LoopbackClient()
    media.receive(audio=True, videos=1)
    try:
        await media.pc.setLocalDescription(await media.pc.createOffer())
        reply = await client.request({"type": "offer", "sdp": media.pc.localDescription.sdp})
        await media.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        await wait_for(lambda: media.pc.connectionState == "connected", 20, "chair connected")
        yield client
    finally:
        await media.close()
        await client.close()


def streets(server: Huishang, count: int) -> list[str]:
    """*count* street sites other than 珠吉街 (wall tiles that need nobody online)."""
    out = [s for s in server.conference.sites if s.count(".") == 1 and s != ZHUJI]
    return out[:count]


async def sent(page: Page) -> dict[str, Any]:
    return dict(await page.evaluate(SENT_JS))


async def test_a_site_only_small_wall_tiles_show_sends_that_small(
    server: Huishang, terminal: Page, chair: Client
) -> None:
    """On a 25-tile wall only: 202 lines (384x202 tiles on the banded 1080p canvas) at the
    wall's 30 fps; with 16 sources on the wall, 15 fps; given the floor (the chair's programme
    takes it): the whole 360 lines and no frame-rate cap. Taken off the wall (paused) and put
    back, and after a rejoin on a new peer connection, the limit is back."""
    await until("paused: nobody needs it", lambda: sent(terminal), lambda s: not s["sending"])
    first = await sent(terminal)
    assert first["captured"] == CAPTURED, first
    assert first["limit"] is None and first["params"]["scale"] in (None, 1), first

    wall_of_one = {"kind": "25", "tiles": [{"source": ZHUJI}]}
    await chair.request({"type": "layout", "layout": wall_of_one})
    state = await until(
        "202p for the wall", lambda: sent(terminal), lambda s: s["sending"] and s["frames"] > 0
    )
    assert state["limit"] == {"height": 202, "fps": 30}, state
    assert state["params"] == {"scale": pytest.approx(CAPTURED / 202), "fps": 30}, state
    await until("sent at 202 lines", lambda: sent(terminal), lambda s: s["height"] == 202)

    tiles = [{"source": ZHUJI}, *({"source": s} for s in streets(server, 15))]
    await chair.request({"type": "layout", "layout": {"kind": "25", "tiles": tiles}})
    state = await until("15 fps asked", lambda: sent(terminal), lambda s: s["params"]["fps"] == 15)
    assert state["limit"] == {"height": 202, "fps": 15}, state
    # framesPerSecond is measured: only loosely, and only that it is not the camera's 30
    await until("about 15 fps sent", lambda: sent(terminal), lambda s: 0 < (s["fps"] or 0) <= 17)
    assert (await sent(terminal))["height"] == 202

    # Off the wall (nobody needs it: paused, the limit lifted), then on it again: resumed
    # with the limit (replaceTrack, then setParameters).
    await chair.request({"type": "layout", "layout": {"kind": "25", "tiles": []}})
    state = await until("paused", lambda: sent(terminal), lambda s: not s["sending"])
    assert state["limit"] is None, state
    await chair.request({"type": "layout", "layout": wall_of_one})
    state = await until("resumed", lambda: sent(terminal), lambda s: s["sending"])
    assert state["limit"] == {"height": 202, "fps": 30}, state
    await until("202 lines again", lambda: sent(terminal), lambda s: s["params"]["fps"] == 30)
    await until("sent at 202 lines", lambda: sent(terminal), lambda s: s["height"] == 202)

    # A rejoin (the signalling listener restarts): a new session and peer connection start
    # unlimited, and the server's pause for the new session brings the limit back.
    before = await terminal.evaluate("window.__huishang.conn.welcome.session")
    generation = await terminal.evaluate("window.__huishang.media.generation")
    await server.signalling.close()
    await server.signalling.start()
    await until(
        "rejoined",
        lambda: terminal.evaluate("window.__huishang.media.generation"),
        lambda g: g > generation,
    )
    assert await terminal.evaluate("window.__huishang.conn.welcome.session") != before
    state = await until(
        "the limit on the new peer connection",
        lambda: sent(terminal),
        lambda s: s["limit"] == {"height": 202, "fps": 30} and s["height"] == 202,
    )
    assert state["params"]["scale"] == pytest.approx(CAPTURED / 202), state


async def test_the_floor_lifts_the_limit(server: Huishang, terminal: Page, chair: Client) -> None:
    """Shown in a small wall tile, then given the floor: back to the camera's 360 lines."""
    await chair.request({"type": "layout", "layout": {"kind": "25", "tiles": [{"source": ZHUJI}]}})
    await until("sent at 202 lines", lambda: sent(terminal), lambda s: s["height"] == 202)
    await chair.request({"type": "floor", "site": ZHUJI})
    state = await until("limit lifted", lambda: sent(terminal), lambda s: s["limit"] is None)
    assert state["params"] == {"scale": 1, "fps": None}, state
    assert state["encoding"] == {"scaleResolutionDownBy": 1, "maxFramerate": None}, state
    await until("360 lines again", lambda: sent(terminal), lambda s: s["height"] == CAPTURED)
    await chair.request({"type": "floor", "site": None})  # back to the wall only: limited
    await until("202 lines again", lambda: sent(terminal), lambda s: s["height"] == 202)


async def test_fps_only_and_bogus_limits(terminal: Page) -> None:
    """A limit with only ``fps`` caps the frame rate and keeps the size; a field that is not a
    positive number is ignored (the other still applies), with no exception and no notice.
    The page plays the server's part (calling its media link's ``pause``)."""
    go = {"video": False, "audio": False}
    notices = await terminal.evaluate(PAUSES_JS, [{**go, "video_limit": {"fps": 10}}])
    assert notices == []
    state = await sent(terminal)
    assert state["limit"] == {"fps": 10}, state
    assert state["params"] == {"scale": 1, "fps": 10}, state
    await until("sending", lambda: sent(terminal), lambda s: s["frames"] > 0)
    await until("about 10 fps sent", lambda: sent(terminal), lambda s: 0 < (s["fps"] or 0) <= 12)
    assert (await sent(terminal))["height"] == CAPTURED

    bogus: list[Any] = [
        {"height": 0},
        {"height": -216, "fps": -1},
        {"height": "216", "fps": "15"},
        {"height": True},
        {"height": None, "fps": None},
        "216",
        216,
        [216, 15],
        None,
        {},
    ]
    for limit in bogus:
        notices = await terminal.evaluate(
            PAUSES_JS, [{**go, "video_limit": {"height": 216}}, {**go, "video_limit": limit}]
        )
        state = await sent(terminal)
        assert notices == [], (limit, notices)
        assert state["limit"] is None, (limit, state)
        assert state["params"] == {"scale": 1, "fps": None}, (limit, state)
    # NaN and infinity (JSON has neither: made on the page)
    await terminal.evaluate(
        "(w) => { window.__huishang.media.pause({...w, video_limit: {height: NaN, fps: 1 / 0}}); }",
        go,
    )
    await terminal.evaluate("window.__huishang.media.sendersSettled()")
    assert (await sent(terminal))["limit"] is None
    # one good field with one bad: the good one applies
    await terminal.evaluate(PAUSES_JS, [{**go, "video_limit": {"height": 180, "fps": "fast"}}])
    state = await sent(terminal)
    assert state["limit"] == {"height": 180}, state
    assert state["params"] == {"scale": 2, "fps": None}, state
    await until("sent at 180 lines", lambda: sent(terminal), lambda s: s["height"] == 180)
    # a pause without video_limit lifts it; a pause message without anything pauses nothing
    await terminal.evaluate(PAUSES_JS, [go])
    assert (await sent(terminal))["params"] == {"scale": 1, "fps": None}
    assert await terminal.evaluate("window.__huishang.media.pause() === undefined")
