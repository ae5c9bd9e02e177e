"""The relay against real headless Chromium peers (browser interop, no signalling server).

Chromium numbers payload types and header extensions its own way, offers every codec it
has, sends transport-wide and abs-send-time extensions, REMB and RTCP its own way: a page
served from 127.0.0.1 (a secure context, so the fake camera works) exchanges SDP with a
:class:`~bridge.peer.Peer` through Playwright's ``evaluate``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from browser_support import CHROMIUM, WEBRTC_ARGS
from playwright.async_api import Page, async_playwright

from bridge.ice import IceConfig, apply_ice_config
from bridge.peer import Peer
from bridge.testkit import Bridge, ReceivedVideo, wait_for

pytestmark = pytest.mark.timeout(120)

CHROMIUM_ARGS = [*WEBRTC_ARGS, "--use-fake-device-for-media-stream=fps=30"]

PAGE = "<!doctype html><meta charset=utf-8><title>relay interop</title><body></body>"

# page-side helpers: build an offer, wait for ICE gathering, apply the answer, read stats
SCRIPT = """
window.start = async (send, receiveVideos) => {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  if (send) {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
    pc.addTransceiver(stream.getAudioTracks()[0], {direction: 'sendrecv'});
    pc.addTransceiver(stream.getVideoTracks()[0], {direction: 'sendrecv'});
  } else {
    pc.addTransceiver('audio', {direction: 'recvonly'});
    for (let i = 0; i < receiveVideos; i++) pc.addTransceiver('video', {direction: 'recvonly'});
  }
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== 'complete') {
    await new Promise(resolve => pc.addEventListener('icegatheringstatechange',
      () => pc.iceGatheringState === 'complete' && resolve()));
  }
  return pc.localDescription.sdp;
};
window.finish = async (sdp) => {
  await window.pc.setRemoteDescription({type: 'answer', sdp});
};
window.inbound = async () => {
  const out = {};
  (await window.pc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp') out[s.mid] = {
      kind: s.kind, packetsLost: s.packetsLost, packetsReceived: s.packetsReceived,
      framesDecoded: s.framesDecoded || 0, keyFramesDecoded: s.keyFramesDecoded || 0,
      nackCount: s.nackCount || 0, pliCount: s.pliCount || 0, ssrc: s.ssrc};
  });
  return out;
};
window.state = () => window.pc.connectionState;
"""


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    undo = apply_ice_config(IceConfig(host_addresses=("127.0.0.1",)))
    yield
    undo()


@pytest.fixture
async def page_url() -> AsyncIterator[str]:
    app = web.Application()

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app.router.add_get("/", index)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@pytest.fixture
async def new_page(tmp_path: Path, page_url: str) -> AsyncIterator[Callable[[], Any]]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        errors: list[str] = []

        async def make() -> Page:
            page = await context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(page_url)
            await page.add_script_tag(content=SCRIPT)
            return page

        try:
            yield make
        finally:
            await context.close()
        assert not errors, errors


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    b = Bridge()
    yield b
    await b.close()


async def connect_page(bridge: Bridge, page: Page, *, send: bool, videos: int = 1) -> Peer:
    peer = Peer(f"chromium{len(bridge.peers)}", bridge.relay)
    bridge.peers.append(peer)
    offer = await page.evaluate("([s, v]) => window.start(s, v)", [send, videos])
    answer = await peer.answer(offer)
    await page.evaluate("sdp => window.finish(sdp)", answer.sdp)
    for _ in range(400):
        if await page.evaluate("window.state()") == "connected":
            break
        await asyncio.sleep(0.05)
    assert await page.evaluate("window.state()") == "connected"
    return peer


async def inbound_video(page: Page) -> dict[str, Any]:
    stats = await page.evaluate("window.inbound()")
    videos = [s for s in stats.values() if s["kind"] == "video"]
    empty = {"framesDecoded": 0, "packetsLost": 0, "keyFramesDecoded": 0}
    return max(videos, key=lambda s: s["framesDecoded"], default=empty)


async def test_chromium_publisher_reaches_aiortc_subscribers(
    bridge: Bridge, new_page: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiortc.rtcrtpreceiver")
    page = await new_page()
    chromium = await connect_page(bridge, page, send=True)
    camera = chromium.publication("video")
    assert camera is not None
    subs = [await bridge.subscriber() for _ in range(2)]
    for _, peer in subs:
        slot = peer.slot("main", "video")
        assert slot is not None
        bridge.relay.route(slot, camera)
    for client, _ in subs:
        mid = client.mid_of("main", "video")
        await wait_for(
            lambda c=client, m=mid: len(c.video.get(m, ReceivedVideo()).frames) >= 30,
            timeout=30,
            what="Chromium's frames at an aiortc subscriber",
        )
    assert camera.keyframes_seen >= 1
    assert not [r for r in caplog.records if "failed to decode" in r.getMessage()]


async def test_chromium_subscriber_decodes_and_survives_switches(
    bridge: Bridge, new_page: Callable[[], Any]
) -> None:
    _, peer_a, _ = await bridge.publisher(tag=1)
    _, peer_b, _ = await bridge.publisher(tag=2)
    page = await new_page()
    chromium = await connect_page(bridge, page, send=False)
    slot = chromium.slot("main", "video")
    audio = chromium.slot("main", "audio")
    assert slot is not None and audio is not None
    cam_a, cam_b = peer_a.publication("video"), peer_b.publication("video")
    mic_a = peer_a.publication("audio")
    assert cam_a is not None and cam_b is not None and mic_a is not None
    bridge.relay.route(slot, cam_a)
    bridge.relay.route(audio, mic_a)

    async def decoded() -> int:
        return int((await inbound_video(page))["framesDecoded"])

    deadline = asyncio.get_running_loop().time() + 30
    while await decoded() < 30:
        assert asyncio.get_running_loop().time() < deadline, "Chromium decoded no frames"
        await asyncio.sleep(0.2)
    for target in (cam_b, cam_a, cam_b):
        before = await decoded()
        switches = slot.switches
        bridge.relay.route(slot, target)
        await wait_for(lambda s=switches: slot.switches > s, what="switch")
        deadline = asyncio.get_running_loop().time() + 20
        while await decoded() < before + 30:
            assert asyncio.get_running_loop().time() < deadline, "Chromium stalled after switch"
            await asyncio.sleep(0.2)
    stats = await inbound_video(page)
    assert stats["packetsLost"] == 0  # gap-free across three switches
    assert stats["keyFramesDecoded"] >= 4
    # Chromium's REMB reached the relay and was aggregated for the publisher it watches
    await wait_for(lambda: slot.remb is not None, timeout=20, what="REMB from Chromium")
