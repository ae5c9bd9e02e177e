"""Live media in the browser pages: terminal pages and the chair console in real headless
Chromium against the real server (PROTOCOL.md, Media; ARCHITECTURE.md, Testing).

Each participant is its own Chromium with its own fake camera, a solid-colour .y4m clip
(珠吉街 red, 冼村街 green, the chair blue), so a pixel sample of a ``<video>`` tells which site
it shows. Frames are counted with getStats ``framesDecoded`` on the page's peer connection
(``window.__huishang.pc``): only a foreground tab runs requestVideoFrameCallback at full rate.
At most three Chromium processes run at once (a shared 2-core machine).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc import RTCSessionDescription
from browser_support import CHROMIUM, WEBRTC_ARGS, until
from playwright.async_api import BrowserContext, Page, Playwright, async_playwright, expect

from bridge.labels import rgb_to_yuv
from bridge.testkit import LoopbackClient, MarkedVideoTrack, wait_for
from signalling.client import Client
from signalling.model import SiteId
from web.app import Huishang

pytestmark = pytest.mark.timeout(180)
logger = logging.getLogger(__name__)

CHAIR, ZHUJI, XIANCUN = "tianhe", "tianhe.zhuji", "tianhe.xiancun"
COLOURS = {CHAIR: (0, 0, 255), ZHUJI: (255, 0, 0), XIANCUN: (0, 160, 0)}
CHROMIUM_ARGS = [*WEBRTC_ARGS, "--autoplay-policy=no-user-gesture-required"]
expect.set_options(timeout=20_000)  # shared, noisy machine: generous, never asserted

# The decoded frames of the page's `main` video, from getStats (0 before the answer).
FRAMES_JS = """async () => {
  const pc = window.__huishang && window.__huishang.pc;
  if (!pc || pc.connectionState === 'closed') return 0;
  const media = window.__huishang.media;
  const mid = Object.keys(media.slots).find((m) => media.slots[m] === 'main' &&
    pc.getTransceivers().some((t) => t.mid === m && t.receiver.track.kind === 'video'));
  let frames = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video' && s.mid === mid) {
      frames = s.framesDecoded || 0;
    }
  });
  return frames;
}"""

# What the page's media link says of itself (for a failure message).
MEDIA_STATE_JS = """() => {
  const h = window.__huishang, m = h && h.media, pc = m && m.pc;
  const notices = [...document.querySelectorAll('[data-testid="notice"]')]
    .map((n) => n.textContent);
  return {
    session: h && h.conn && h.conn.welcome && h.conn.welcome.session,
    generation: m && m.generation, slots: m && m.slots, paused: m && m.paused,
    pc: pc && pc.connectionState, ice: pc && pc.iceConnectionState,
    media_state: document.querySelector('[data-testid="media-state"]')?.dataset.state,
    notices,
  };
}"""

# The page's inbound video RTP statistics, per mid (for a failure message).
INBOUND_JS = """async () => {
  const pc = window.__huishang.media.pc;
  if (!pc) return null;
  const out = {};
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out[s.mid] = {packets: s.packetsReceived, frames: s.framesReceived,
        decoded: s.framesDecoded, keyframes: s.keyFramesDecoded, pli: s.pliCount,
        nack: s.nackCount, lost: s.packetsLost, ssrc: s.ssrc};
    }
  });
  return out;
}"""

# The page's outbound video RTP statistics (for a failure message).
OUTBOUND_JS = """async () => {
  const pc = window.__huishang.media.pc;
  if (!pc) return null;
  const out = [];
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.push({packets: s.packetsSent, frames: s.framesEncoded, keyframes: s.keyFramesEncoded,
        pli: s.pliCount, height: s.frameHeight, ssrc: s.ssrc});
    }
  });
  return {stats: out, tracks: pc.getSenders().map((x) => x.track && x.track.kind)};
}"""


def relay_state(server: Huishang, sites: Iterable[str]) -> dict[str, Any]:
    """What the relay holds: each site's peer, every slot and publication (for a failure)."""
    media = server.media
    assert media is not None
    out: dict[str, Any] = {}
    for site in sites:
        peer = media.peer_of(site)
        out[f"peer {site}"] = (
            None
            if peer is None
            else (peer.id, peer.pc.connectionState, peer.close_reason, sorted(peer.slot_names))
        )
    for slot in media.relay.slots.values():
        port = slot.port
        out[f"slot {slot.id}"] = {
            "source": slot.source.id if slot.source is not None else None,
            "pending": slot.pending.id if slot.pending is not None else None,
            "forwarded": slot.packets_forwarded,
            "keyframe_requests": slot.keyframe_requests,
            "ready": port.ready if port is not None else None,
        }
    for publication in media.relay.publications.values():
        out[f"publication {publication.id}"] = {
            "closed": publication.closed,
            "packets": publication.packets_received,
            "keyframes": publication.keyframes_seen,
            "plis": publication.plis_sent,
            "muted": publication.muted,
        }
    return out


async def snapshot(server: Huishang, pages: dict[str, Page]) -> str:
    """Each page's media link, inbound and outbound video, and the relay (for a failure)."""
    lines = []
    for name, page in pages.items():
        try:
            state = await page.evaluate(MEDIA_STATE_JS)
            inbound = await page.evaluate(INBOUND_JS)
            outbound = await page.evaluate(OUTBOUND_JS)
        except Exception as exc:  # a page that is gone says so
            state, inbound, outbound = repr(exc), None, None
        lines.append(f"{name}: {state}; inbound {inbound}; outbound {outbound}")
    lines.append(f"relay: {relay_state(server, pages)}")
    lines.append(f"sessions: { {s: server.conference.live_session(SiteId(s)) for s in pages} }")
    return "\n".join(lines)


# Milestones of the page's first join, in ms since navigation started (performance.now()).
TIMES_JS = """() => {
  const h = window.__huishang;
  return {...h.media.marks, local: h.localAt, frame: h.firstFrameAt, welcome: h.welcomeAt};
}"""

# Which of the page's own tracks its senders carry now (a paused kind sends no track).
SENDING_JS = """() => {
  const out = {audio: false, video: false};
  for (const s of window.__huishang.pc.getSenders()) if (s.track) out[s.track.kind] = true;
  return out;
}"""

SENDING, NOT_SENDING = {"audio": True, "video": True}, {"audio": False, "video": False}

# Whether the page's microphone track is enabled (mute self disables it).
MIC_JS = "() => window.__huishang.media.local.getAudioTracks()[0].enabled"

# The mean RGB of a <video> (drawn small onto a canvas), or null before its first frame.
COLOUR_JS = """(selector) => {
  const video = document.querySelector(selector);
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = 32; canvas.height = 24;
  const g = canvas.getContext('2d');
  g.drawImage(video, 0, 0, 32, 24);
  const data = g.getImageData(0, 0, 32, 24).data;
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i += 4) for (let c = 0; c < 3; c++) sum[c] += data[i + c];
  const n = data.length / 4;
  return sum.map((v) => v / n);
}"""


def write_y4m(path: Path, rgb: tuple[int, int, int], width: int = 320, height: int = 240) -> Path:
    """A solid-colour 320x240 30 fps I420 clip (YUV4MPEG2), one second long (Chromium loops it)."""
    y, u, v = rgb_to_yuv(rgb)
    frame = (
        b"FRAME\n"
        + np.concatenate(
            [
                np.full(width * height, y, np.uint8),
                np.full(width * height // 4, u, np.uint8),
                np.full(width * height // 4, v, np.uint8),
            ]
        ).tobytes()
    )
    header = f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode()
    path.write_bytes(header + frame * 30)
    return path


def dominant(rgb: list[float] | None) -> str:
    """Which primary a mean colour is, or "?" when none stands out."""
    if rgb is None:
        return "?"
    r, g, b = rgb
    for name, (hi, lo1, lo2) in {"red": (r, g, b), "green": (g, r, b), "blue": (b, r, g)}.items():
        if hi > 90 and hi > 2 * max(lo1, lo2, 1):
            return name
    return "?"


NAMES = {CHAIR: "blue", ZHUJI: "red", XIANCUN: "green"}


class Browsers:
    """One Chromium per participant (the fake camera is a process-wide flag)."""

    def __init__(self, playwright: Playwright, tmp_path: Path) -> None:
        self.playwright, self.tmp_path = playwright, tmp_path
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    async def open(self, url: str, name: str, camera: Path | None) -> Page:
        args = [*CHROMIUM_ARGS]
        if camera is not None:
            args += [
                "--use-fake-device-for-media-stream=fps=30",
                f"--use-file-for-fake-video-capture={camera}",
            ]
        context = await self.playwright.chromium.launch_persistent_context(
            str(self.tmp_path / f"profile-{name}"),
            executable_path=CHROMIUM,
            headless=True,
            args=args,
            viewport={"width": 1280, "height": 860},
            locale="zh-CN",
        )
        self.contexts.append(context)
        page = context.pages[0] if context.pages else await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{name}: {exc}"))
        await page.goto(url)
        return page

    async def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Exception):
                await context.close()


@pytest.fixture
async def browsers(tmp_path: Path) -> AsyncIterator[Browsers]:
    async with async_playwright() as playwright:
        b = Browsers(playwright, tmp_path)
        try:
            yield b
        finally:
            await b.close()
        assert not b.errors, b.errors


async def frames(page: Page) -> int:
    return int(await page.evaluate(FRAMES_JS))


async def shows(page: Page, selector: str, site: str, what: str) -> None:
    """The <video> at ``selector`` shows ``site``'s camera colour."""
    await until(
        what,
        lambda: page.evaluate(COLOUR_JS, selector),
        lambda rgb: dominant(rgb) == NAMES[site],
    )


async def plays(page: Page, what: str) -> None:
    """The page's main video decodes frames, and keeps doing so."""
    first = await until(f"{what}: first frames", lambda: frames(page), lambda n: n > 0)
    await until(f"{what}: frames keep coming", lambda: frames(page), lambda n: n > first + 10)


def by(page: Page, testid: str):  # type: ignore[no-untyped-def]
    return page.get_by_test_id(testid)


# The rejoin step once failed about one run in eight under load: 珠吉街's page took the
# server's pause and resume for its new session faster than replaceTrack resolves, skipped the
# resume and sent nothing (see test_a_pause_and_a_resume_in_one_breath_end_sending). Its
# failure message carries both pages' media state and the relay's view of the slot.
async def test_terminals_and_chair_see_each_other(
    server: Huishang, browsers: Browsers, tmp_path: Path
) -> None:
    cameras = {site: write_y4m(tmp_path / f"{site}.y4m", rgb) for site, rgb in COLOURS.items()}
    pages = {
        CHAIR: await browsers.open(server.join_url(CHAIR), "chair", cameras[CHAIR]),
        ZHUJI: await browsers.open(server.join_url(ZHUJI), "zhuji", cameras[ZHUJI]),
        XIANCUN: await browsers.open(server.join_url(XIANCUN), "xiancun", cameras[XIANCUN]),
    }
    try:
        await see_each_other(server, pages)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await snapshot(server, pages)}") from None


async def see_each_other(server: Huishang, pages: dict[str, Page]) -> None:
    chair, zhuji, xiancun = pages[CHAIR], pages[ZHUJI], pages[XIANCUN]
    terminals = {ZHUJI: zhuji, XIANCUN: xiancun}
    await expect(by(chair, "connection")).to_have_attribute("data-state", "online")

    # (a) + (b) nobody holds the floor: both terminals play the chair (blue), labelled so.
    for site, page in terminals.items():
        await plays(page, f"{site} main")
        await shows(page, '[data-testid="programme-video"]', CHAIR, f"{site} sees the chair")
        await expect(by(page, "programme-label")).to_contain_text("天河区应急指挥中心")
        await expect(by(page, "media-state")).to_have_attribute("data-state", "connected")
    # A terminal nobody watches is asked to pause its camera: it stops sending it at all.
    await expect(by(xiancun, "self-paused")).to_be_visible()
    assert await xiancun.evaluate(SENDING_JS) == {"audio": False, "video": False}
    assert await chair.evaluate(SENDING_JS) == {"audio": True, "video": True}
    await expect(by(zhuji, "media-stats")).to_contain_text("RTT")
    # Mute self disables the microphone track.
    await by(zhuji, "mute").click()
    await until("mic off", lambda: zhuji.evaluate(MIC_JS), lambda on: on is False)
    await by(zhuji, "mute").click()
    await until("mic on", lambda: zhuji.evaluate(MIC_JS), lambda on: on is True)

    # (e) page load → first remote frame (logged, never asserted: a shared 2-core machine):
    # the first loads (three browsers starting at once), then one page reloaded on its own.
    times = [(site, await page.evaluate(TIMES_JS)) for site, page in terminals.items()]
    await xiancun.reload()
    await plays(xiancun, "冼村街 reloaded")
    await shows(xiancun, '[data-testid="programme-video"]', CHAIR, "冼村街 sees the chair")
    times.append((f"{XIANCUN} (reloaded)", await xiancun.evaluate(TIMES_JS)))
    for site, t in times:
        logger.warning(
            "page load → first remote frame, %s: %.0f ms (welcome %.0f, camera ready %.0f, "
            "offer made %.0f, sent %.0f, answer %.0f, connected %.0f)",
            site,
            *(
                t.get(k) or -1
                for k in ("frame", "welcome", "local", "described", "offer", "answer", "connected")
            ),
        )

    # (c) the chair gives the floor to 珠吉街 from the console.
    roster = chair.get_by_test_id("roster")
    await roster.locator(f'[data-site="{ZHUJI}"] [data-action="floor"]').click()
    await shows(xiancun, '[data-testid="programme-video"]', ZHUJI, "冼村街 sees 珠吉街")
    await expect(by(xiancun, "programme-label")).to_contain_text("珠吉街")
    await shows(zhuji, '[data-testid="programme-video"]', CHAIR, "珠吉街 sees the chair")
    await expect(by(zhuji, "self-paused")).to_be_hidden()
    await plays(chair, "chair programme")
    await shows(chair, '[data-testid="programme-video"]', ZHUJI, "the chair sees 珠吉街")
    await expect(by(chair, "programme-label")).to_have_text("珠吉街")

    # (d) the chair previews 冼村街 in a tile.
    await roster.locator(f'[data-site="{XIANCUN}"] [data-action="preview"]').click()
    await expect(by(chair, "preview-label-extra1")).to_have_text("冼村街")
    await shows(chair, '[data-testid="preview-video-extra1"]', XIANCUN, "preview tile 1: 冼村街")
    await expect(by(chair, "preview-extra1")).to_have_attribute("data-live", "true")
    assert (await xiancun.evaluate(SENDING_JS))["video"] is True  # watched again: resumed

    # A refused offer shows the server's reason as a notice (and breaks nothing).
    refused = await xiancun.evaluate("window.__huishang.media.negotiate('v=0 nonsense')")
    assert refused is None
    await expect(by(xiancun, "notice")).to_contain_text("bad_request")
    await plays(xiancun, "冼村街 after a refused offer")

    # The signalling listener restarts: every page rejoins by itself with a new peer connection.
    before = await xiancun.evaluate("window.__huishang.conn.welcome.session")
    await server.signalling.close()
    await server.signalling.start()
    # protocol.js backs off while the listener is away (up to 15 s between tries), and the
    # listener's close waits for every session's media to close: under load that alone can
    # take longer than the usual 25 s.
    await until(
        "冼村街 rejoined",
        lambda: xiancun.evaluate("window.__huishang.conn.welcome.session"),
        lambda session: session != before,
        timeout=60,
    )
    await plays(xiancun, "冼村街 after the rejoin")
    await shows(xiancun, '[data-testid="programme-video"]', ZHUJI, "冼村街 sees 珠吉街 again")
    await shows(chair, '[data-testid="programme-video"]', ZHUJI, "the chair sees 珠吉街 again")
    # The chair console asked for its preview again on its new session.
    await shows(chair, '[data-testid="preview-video-extra1"]', XIANCUN, "preview kept")
    await expect(by(chair, "preview-label-extra1")).to_have_text("冼村街")
    # Clearing a preview tile.
    await by(chair, "preview-extra1").locator('[data-action="preview-clear"]').click()
    await expect(by(chair, "preview-label-extra1")).to_have_text("")
    await expect(by(chair, "preview-extra1")).to_have_attribute("data-live", "false")


async def test_a_terminal_without_camera_receives_only(
    server: Huishang, browsers: Browsers
) -> None:
    """No camera and no microphone: a visible notice, and the programme still plays."""
    token = server.token_for(CHAIR)  # type: ignore[arg-type]
    assert token is not None
    chair = await Client.connect(server.signalling_url, token)
    media = LoopbackClient()
    media.send(MarkedVideoTrack(1), audio=True)
    await media.pc.setLocalDescription(await media.pc.createOffer())
    reply = await chair.request({"type": "offer", "sdp": media.pc.localDescription.sdp})
    await media.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    await wait_for(lambda: media.pc.connectionState == "connected", 20, "chair connected")
    try:
        page = await browsers.open(server.join_url(ZHUJI), "nocam", camera=None)
        await expect(by(page, "devices")).to_be_visible()
        await expect(by(page, "devices")).to_contain_text("仅接收")
        await plays(page, "receive-only main")
        await expect(by(page, "self")).to_be_hidden()
        directions = await page.evaluate(
            "window.__huishang.pc.getTransceivers().map((t) => t.direction)"
        )
        assert directions[:2] == ["recvonly", "recvonly"], directions
    finally:
        await media.close()
        await chair.close()


# Hand the page's media link these `pause` messages in one go (as terminal.js would).
PAUSES_JS = "(wishes) => { for (const w of wishes) window.__huishang.media.pause(w); }"

# Frames the page's camera sender has encoded so far (0 while it sends no track).
ENCODED_JS = """async () => {
  let frames = 0;
  (await window.__huishang.media.pc.getStats()).forEach((s) => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') frames += s.framesEncoded || 0;
  });
  return frames;
}"""


async def test_a_pause_and_a_resume_in_one_breath_end_sending(
    server: Huishang, browsers: Browsers, tmp_path: Path
) -> None:
    """``pause`` then resume faster than ``replaceTrack`` resolves (the server sends both
    within milliseconds when several sites rejoin at once): the senders end up with their
    tracks, and the camera keeps encoding. The page plays the server's part here, calling
    its media link's ``pause`` as terminal.js does for each message; the cause of the
    no-video-after-a-signalling-restart flake (the resume was skipped because
    ``sender.track`` still showed the track the pending pause was about to remove)."""
    camera = write_y4m(tmp_path / "camera.y4m", COLOURS[XIANCUN])
    page = await browsers.open(server.join_url(XIANCUN), "xiancun", camera)
    await expect(by(page, "media-state")).to_have_attribute("data-state", "connected")
    await expect(by(page, "self-paused")).to_be_visible()  # alone: nobody needs it
    await until("paused", lambda: page.evaluate(SENDING_JS), lambda s: s == NOT_SENDING)
    go, stop = {"video": False, "audio": False}, {"video": True, "audio": True}
    await page.evaluate(PAUSES_JS, [go])
    await until("resumed", lambda: page.evaluate(SENDING_JS), lambda s: s == SENDING)

    await page.evaluate(PAUSES_JS, [stop, go])
    first = await page.evaluate(ENCODED_JS)
    await until(
        "camera keeps encoding", lambda: page.evaluate(ENCODED_JS), lambda n: n > first + 30
    )
    assert await page.evaluate(SENDING_JS) == SENDING
    # ... and the other way round: pause, resume, pause leaves nothing sent.
    await page.evaluate(PAUSES_JS, [stop, go, stop])
    await until("paused again", lambda: page.evaluate(SENDING_JS), lambda s: s == NOT_SENDING)
    await page.evaluate("window.__huishang.media.sendersSettled()")
    assert await page.evaluate(SENDING_JS) == NOT_SENDING


# Start the page's media again with an offer the server refuses for a passing reason: a burst
# of pings empties the session's rate-limit bucket just before the offer goes out.
REFUSED_START_JS = """async () => {
  const h = window.__huishang;
  const conn = h.conn;
  const request = conn.request;
  conn.request = (msg) => {
    if (msg.type === 'offer') {
      delete conn.request;  // the prototype's again
      for (let i = 0; i < 300; i++) conn.send({type: 'ping'});
    }
    return request.call(conn, msg);
  };
  await h.media.start(conn);
  return h.media.lastRefusal;
}"""


async def test_an_offer_refused_for_a_passing_reason_is_tried_again(
    server: Huishang, browsers: Browsers, tmp_path: Path
) -> None:
    """A session whose offer the server refuses with ``rate_limited`` (or ``timeout``,
    ``internal``) does not stay without media: the page shows the refusal, then rejoins
    (a fresh session) after a back-off and connects."""
    camera = write_y4m(tmp_path / "camera.y4m", COLOURS[XIANCUN])
    page = await browsers.open(server.join_url(XIANCUN), "xiancun", camera)
    await expect(by(page, "media-state")).to_have_attribute("data-state", "connected")
    before = await page.evaluate("window.__huishang.conn.welcome.session")
    assert await page.evaluate(REFUSED_START_JS) == "rate_limited"
    await expect(by(page, "notice")).to_contain_text("rate_limited")
    await until(
        "rejoined",
        lambda: page.evaluate("window.__huishang.conn.welcome.session"),
        lambda session: session != before,
    )
    await expect(by(page, "media-state")).to_have_attribute("data-state", "connected")
    assert await page.evaluate("window.__huishang.media.lastRefusal") is None
