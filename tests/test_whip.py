"""WHIP ingest and WHEP playback through the real server (web.whip, bridge.whip_peer).

- An independent client: PyAV's bundled FFmpeg ``whip`` muxer publishes H.264 + Opus as
  珠吉街 from a subprocess; the site shows online, the chair can give it the floor, the
  transcoded picture reaches the wall (an aiortc wall client reads the frame marks back),
  and closing the muxer (which sends DELETE) frees the publication.
- aiortc clients: a VP8 WHIP publisher forwarded without transcoding, watched over WHEP;
  a WHEP viewer of the wall output; a publisher that vanishes without DELETE.
- Bad input: missing / wrong token (401), malformed SDP (400 with the reason), wrong media
  type (415), roles (403), unknown source / resource (404), ICE restart (422), If-Match (412).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from browser_support import FAKE_DEVICE_ARGS, WEBRTC_ARGS, chromium

from bridge.layout import Rect
from bridge.scaler import FitMode, plan_tile
from bridge.testkit import MarkedVideoTrack, read_mark, wait_for
from bridge.whip_peer import TrickleFragment, parse_trickle_fragment
from signalling.client import Client
from signalling.model import SiteId
from web.app import Huishang
from web.config import HuishangConfig, IceConfig, IceServer
from web.tls import make_self_signed
from web.whip import WhipGateway

ZHUJI, XIANCUN, LIEDE = "tianhe.zhuji", "tianhe.xiancun", "tianhe.liede"
CHAIR, OPERATOR, WALL = "tianhe", "tianhe.operator", "tianhe.wall"
SRC_W, SRC_H = 320, 240
FFMPEG_TAG = 0xA

U8 = npt.NDArray[np.uint8]

#: The FFmpeg WHIP publisher, run as ``python -c PUBLISHER url token cert key tag``: H.264
#: (libx264, baseline, no B-frames, a keyframe a second) + Opus; frame i shows the mark
#: (tag << 12) | i. Stops and DELETEs its session when a line arrives on stdin.
PUBLISHER = r"""
import fractions, select, sys, time
import av, numpy as np
from bridge.testkit import mark_frame
url, token, cert, key, tag = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
out = av.open(url, mode="w", format="whip", options={
    "cert_file": cert, "key_file": key, "authorization": token, "handshake_timeout": "20000"})
video = out.add_stream("libx264", rate=30, options={
    "preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "bf": "0", "g": "30"})
video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
audio = out.add_stream("libopus", rate=48000, layout="stereo")
silence = np.zeros((1, 1920), np.int16)
start, i, samples = time.time(), 0, 0
while not select.select([sys.stdin], [], [], 0)[0]:
    frame = mark_frame((tag << 12) | (i % 4096), 320, 240)
    frame.pts, frame.time_base = i, fractions.Fraction(1, 30)
    for packet in video.encode(frame):
        out.mux(packet)
    while samples < (i + 1) * 1600:
        chunk = av.AudioFrame.from_ndarray(silence, format="s16", layout="stereo")
        chunk.sample_rate, chunk.pts = 48000, samples
        chunk.time_base = fractions.Fraction(1, 48000)
        samples += 960
        for packet in audio.encode(chunk):
            out.mux(packet)
    i += 1
    time.sleep(max(0.0, start + i / 30 - time.time()))
out.close()
print("closed", i, flush=True)
"""


# -- helpers ---------------------------------------------------------------------------------


def token(app: Huishang, site: str) -> str:
    value = app.token_for(SiteId(site))
    assert value is not None
    return value


def bearer(app: Huishang, site: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(app, site)}"}


@dataclass
class Reply:
    status: int
    text: str
    headers: dict[str, str]
    links: list[str]


async def http(
    method: str,
    url: str,
    *,
    body: str | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    sent = dict(headers or {})
    if content_type is not None:
        sent["Content-Type"] = content_type
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers=sent) as response,
    ):
        text = await response.text()
        return Reply(
            response.status,
            text,
            dict(response.headers),
            response.headers.getall("Link", []),
        )


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


@dataclass
class Viewer:
    """An aiortc WHEP (or WHIP) client: keeps the marks and frames it decoded."""

    pc: RTCPeerConnection
    location: str = ""
    marks: list[int] = field(default_factory=list)
    latest: VideoFrame | None = None
    audio_frames: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    watchers: list[Callable[[VideoFrame], None]] = field(default_factory=list)

    def luma(self) -> U8:
        frame = self.latest
        assert frame is not None
        plane = frame.planes[0]
        y = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)
        return np.array(y[:, : frame.width])

    async def consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame):
                    self.latest = frame
                    self.marks.append(read_mark(frame))
                    for watcher in self.watchers:
                        watcher(frame)
                else:
                    self.audio_frames += 1

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


async def negotiate(app: Huishang, client: Viewer, path: str, site: str) -> Reply:
    """POST the client's offer to *path*; apply the answer; wait until connected."""
    await client.pc.setLocalDescription(await client.pc.createOffer())
    reply = await http(
        "POST",
        app.web_url + path,
        body=client.pc.localDescription.sdp,
        content_type="application/sdp",
        headers=bearer(app, site),
    )
    assert reply.status == 201, reply
    assert reply.headers["Content-Type"].startswith("application/sdp")
    client.location = reply.headers["Location"]
    await client.pc.setRemoteDescription(RTCSessionDescription(reply.text, "answer"))
    await wait_for(lambda: client.pc.connectionState == "connected", 20, f"{path} connected")
    return reply


async def whep_viewer(app: Huishang, source: str, site: str, audio: bool = True) -> Viewer:
    viewer = Viewer(new_pc())
    viewer.pc.on(
        "track", lambda track: viewer.tasks.append(asyncio.ensure_future(viewer.consume(track)))
    )
    if audio:
        viewer.pc.addTransceiver("audio", direction="recvonly")
    viewer.pc.addTransceiver("video", direction="recvonly")
    await negotiate(app, viewer, f"/whep/{source}", site)
    return viewer


async def whip_publisher(app: Huishang, site: str, tag: int) -> Viewer:
    """An aiortc WHIP client sending VP8 marks (and Opus), sendonly."""
    client = Viewer(new_pc())
    client.pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    client.pc.addTransceiver(MarkedVideoTrack(tag, SRC_W, SRC_H), direction="sendonly")
    await negotiate(app, client, "/whip", site)
    return client


def gateway(app: Huishang) -> WhipGateway:
    return next(g for g in app.gateways if isinstance(g, WhipGateway))


def online(app: Huishang, site: str) -> bool:
    return app.conference.live_session(SiteId(site)) is not None


def published(app: Huishang, site: str) -> bool:
    assert app.media is not None
    return site in app.media.local_sources


async def wall_client(app: Huishang) -> tuple[Client, Viewer]:
    """The wall display (the ``tianhe.wall`` site) over signalling, as the wall page does."""
    signalling = await Client.connect(app.signalling_url, token(app, WALL))
    wall = Viewer(new_pc())
    wall.pc.on("track", lambda t: wall.tasks.append(asyncio.ensure_future(wall.consume(t))))
    wall.pc.addTransceiver("audio", direction="recvonly")
    wall.pc.addTransceiver("video", direction="recvonly")
    await wall.pc.setLocalDescription(await wall.pc.createOffer())
    reply = await signalling.request({"type": "offer", "sdp": wall.pc.localDescription.sdp})
    await wall.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    await wait_for(lambda: wall.pc.connectionState == "connected", 20, "wall connected")
    return signalling, wall


def read_mark_in(y: U8, rect: Rect) -> int:
    """bridge.testkit.read_mark on the part of a decoded wall where one source lies."""
    area = y[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w]
    block = rect.w // 16
    top, bottom = int(rect.h * 0.35), int(rect.h * 0.65)
    value = 0
    for bit in range(16):
        x0, x1 = bit * block + block // 4, (bit + 1) * block - block // 4
        value = (value << 1) | int(area[top + 4 : bottom - 4, x0:x1].mean() > 128)
    return value


async def one_tile(app: Huishang) -> Rect:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{app.web_url}/api/layout-geometry",
            params={"kind": "1", "w": "1920", "h": "1080", "output": "wall"},
        ) as response,
    ):
        body = await response.json()
    tile = Rect(*body["rects"][0])
    return plan_tile(tile, SRC_W, SRC_H, FitMode.LETTERBOX).dst


async def wait_tile_tag(wall: Viewer, box: Rect, tag: int, what: str) -> int:
    for _ in range(200):
        if wall.latest is not None:
            mark = read_mark_in(wall.luma(), box)
            if mark >> 12 == tag:
                return mark
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """The ECDSA P-256 pair FFmpeg's DTLS needs against aiortc (FIELD-NOTES.md)."""
    cert, key = tmp_path / "whip.crt", tmp_path / "whip.key"
    make_self_signed(cert, key, ["localhost"])
    return cert, key


@pytest.fixture
async def operator(server: Huishang) -> AsyncIterator[Client]:
    client = await Client.connect(server.signalling_url, token(server, OPERATOR))
    yield client
    await client.close()


# -- the independent client ------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_ffmpeg_publishes_h264_that_reaches_the_wall_and_delete_frees_it(
    server: Huishang, operator: Client, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    args = [server.web_url + "/whip", token(server, ZHUJI), str(cert), str(key), str(FFMPEG_TAG)]
    ffmpeg = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    chair = await Client.connect(server.signalling_url, token(server, CHAIR))
    signalling, wall = await wall_client(server)
    try:
        await wait_for(lambda: online(server, ZHUJI), 30, "珠吉街 online through WHIP")
        whip = gateway(server)
        (ingest,) = whip.ingests.values()
        assert ingest.publisher.codecs == {"video": "H264", "audio": "opus"}
        status = await http("GET", server.web_url + "/api/status")
        assert status.status == 200
        assert '"id": "tianhe.zhuji"' in status.text or ZHUJI in status.text

        # the operator puts it on the wall: the transcoded picture shows in the tile
        await operator.request(
            {
                "type": "layout",
                "layout": {"output": "wall", "kind": "1", "tiles": [{"source": ZHUJI}]},
            }
        )
        box = await one_tile(server)
        first = await wait_tile_tag(wall, box, FFMPEG_TAG, "FFmpeg's picture on the wall")
        await asyncio.sleep(1.0)
        later = await wait_tile_tag(wall, box, FFMPEG_TAG, "FFmpeg's picture again")
        assert first & 0xFFF != later & 0xFFF  # the picture moves
        transcoder = ingest.publisher.transcoder
        assert transcoder is not None and transcoder.stats.sent == 0  # nobody watched VP8

        # the chair can give the WHIP site the floor, and watch its VP8 transcode
        await chair.request({"type": "floor", "site": ZHUJI})
        assert server.conference.floor == ZHUJI
        viewer = await whep_viewer(server, ZHUJI, CHAIR)
        try:
            await wait_for(
                lambda: len(viewer.marks) > 10 and viewer.marks[-1] >> 12 == FFMPEG_TAG,
                20,
                "the transcoded stream over WHEP",
            )
        finally:
            await viewer.close()
        assert transcoder.stats.sent > 0 and transcoder.stats.keyframes >= 1

        # the muxer ends (it sends DELETE): the publication is freed, the site goes offline
        video_id = ingest.sources["video"].id
        assert server.media is not None and video_id in server.media.relay.publications
        assert ffmpeg.stdin is not None
        ffmpeg.stdin.write(b"stop\n")
        ffmpeg.stdin.flush()
        await wait_for(lambda: not online(server, ZHUJI), 20, "珠吉街 offline after DELETE")
        assert not published(server, ZHUJI)
        assert video_id not in server.media.relay.publications
        assert ZHUJI not in server.media.local_decoders
        assert whip.ingests == {}
        out, err = await asyncio.get_running_loop().run_in_executor(None, ffmpeg.communicate)
        assert ffmpeg.returncode == 0, err.decode(errors="replace")[-2000:]
        assert b"closed" in out
    finally:
        if ffmpeg.poll() is None:
            ffmpeg.kill()
            ffmpeg.wait()
        await wall.close()
        await signalling.close()
        await chair.close()


# -- aiortc clients --------------------------------------------------------------------------


async def test_vp8_publisher_is_forwarded_and_watched_over_whep(server: Huishang) -> None:
    publisher = await whip_publisher(server, XIANCUN, 6)
    viewer: Viewer | None = None
    try:
        await wait_for(lambda: online(server, XIANCUN), 10, "冼村街 online")
        (ingest,) = gateway(server).ingests.values()
        assert ingest.publisher.codecs["video"] == "VP8"
        assert ingest.publisher.transcoder is None  # forwarded, never decoded for the relay
        viewer = await whep_viewer(server, XIANCUN, CHAIR)
        await wait_for(lambda: len(viewer.marks) > 10, 20, "the WHEP viewer decodes 冼村街")
        assert {m >> 12 for m in viewer.marks[-5:]} == {6}
        await wait_for(lambda: viewer.audio_frames > 0, 10, "audio reaches the viewer")
        # the programme mix can decode the WHIP site's microphone (a DecodedSource)
        assert server.media is not None
        assert server.media.source_of(XIANCUN) is ingest.publisher
        microphone = ingest.publisher.set_decode("audio", True)
        assert microphone is not None
        sound = await asyncio.wait_for(microphone.recv(), 10)
        assert isinstance(sound, AudioFrame) and sound.sample_rate == 48000
        ingest.publisher.set_decode("audio", False)

        # DELETE frees the publication; the viewer's slot goes blank; DELETE again: 404
        video_id = ingest.sources["video"].id
        gone = await http(
            "DELETE", server.web_url + publisher.location, headers=bearer(server, XIANCUN)
        )
        assert gone.status == 200
        assert not online(server, XIANCUN) and not published(server, XIANCUN)
        assert server.media is not None and video_id not in server.media.relay.publications
        again = await http(
            "DELETE", server.web_url + publisher.location, headers=bearer(server, XIANCUN)
        )
        assert again.status == 404
        (view,) = gateway(server).views.values()
        assert view.viewer.video is not None and view.viewer.video.source is None

        # the WHEP viewer ends with DELETE too
        bye = await http("DELETE", server.web_url + viewer.location, headers=bearer(server, CHAIR))
        assert bye.status == 200 and gateway(server).views == {}
    finally:
        if viewer is not None:
            await viewer.close()
        await publisher.close()


async def test_a_terminal_watched_over_whep_is_not_paused(server: Huishang) -> None:
    from bridge.testkit import LoopbackClient

    terminal = await Client.connect(server.signalling_url, token(server, LIEDE))
    media = LoopbackClient()
    media.send(MarkedVideoTrack(9, SRC_W, SRC_H), audio=True)
    await media.pc.setLocalDescription(await media.pc.createOffer())
    reply = await terminal.request({"type": "offer", "sdp": media.pc.localDescription.sdp})
    await media.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    def paused(video: bool) -> Callable[[dict[str, object]], bool]:
        return lambda e: e["video"] is video

    viewer: Viewer | None = None
    try:
        await terminal.next_event("pause", where=paused(True))  # nobody shows 猎德街
        viewer = await whep_viewer(server, LIEDE, CHAIR)
        await terminal.next_event("pause", where=paused(False))  # the viewer needs it
        await wait_for(lambda: len(viewer.marks) > 5, 20, "the WHEP viewer decodes 猎德街")
        assert {m >> 12 for m in viewer.marks[-3:]} == {9}
        bye = await http("DELETE", server.web_url + viewer.location, headers=bearer(server, CHAIR))
        assert bye.status == 200
        await terminal.next_event("pause", where=paused(True))  # nobody again
    finally:
        if viewer is not None:
            await viewer.close()
        await media.close()
        await terminal.close()


async def test_whep_viewer_receives_the_wall_output(server: Huishang, operator: Client) -> None:
    publisher = await whip_publisher(server, LIEDE, 7)
    viewer = await whep_viewer(server, "wall", ZHUJI)  # a terminal may watch the wall
    try:
        await operator.request(
            {
                "type": "layout",
                "layout": {"output": "wall", "kind": "1", "tiles": [{"source": LIEDE}]},
            }
        )
        box = await one_tile(server)
        await wait_tile_tag(viewer, box, 7, "列德街 on the wall, seen over WHEP")
        assert viewer.latest is not None and viewer.latest.width == 1920
        output = server.walls.outputs["wall"]  # type: ignore[union-attr]
        assert output.publication.slots  # the viewer's slot carries the output
    finally:
        await viewer.close()
        await publisher.close()


async def test_programme_over_whep_follows_the_floor_and_mutes(server: Huishang) -> None:
    chair = await Client.connect(server.signalling_url, token(server, CHAIR))
    publisher = await whip_publisher(server, LIEDE, 7)
    viewer = await whep_viewer(server, "programme", ZHUJI)  # a terminal's programme
    try:
        assert server.conference.plan.programme_wanted  # the viewer keeps it unpaused
        await chair.request({"type": "floor", "site": LIEDE})
        await wait_for(
            lambda: len(viewer.marks) > 5 and viewer.marks[-1] >> 12 == 7,
            20,
            "the floor holder (a WHIP site) as the programme",
        )
        await wait_for(lambda: viewer.audio_frames > 0, 10, "the floor holder's audio")
        # the chair mutes the WHIP site: its audio is no longer forwarded
        (ingest,) = gateway(server).ingests.values()
        await chair.request({"type": "mute", "site": LIEDE, "audio": True})
        assert ingest.sources["audio"].muted
        await chair.request({"type": "mute", "site": LIEDE, "audio": False})
        assert not ingest.sources["audio"].muted
        bye = await http("DELETE", server.web_url + viewer.location, headers=bearer(server, ZHUJI))
        assert bye.status == 200
        assert not server.conference.plan.programme_wanted
    finally:
        await viewer.close()
        await publisher.close()
        await chair.close()


#: A minimal WHEP player in the page: recvonly offer, POST with the Bearer token, answer,
#: then wait until getStats counts decoded frames; returns that count, or an error string.
WHEP_PLAYER = """async ([url, token]) => {
  const pc = new RTCPeerConnection({bundlePolicy: "max-bundle"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  pc.addTransceiver("video", {direction: "recvonly"});
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === "complete") return done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && done();
    setTimeout(done, 3000);
  });
  const reply = await fetch(url, {method: "POST", body: pc.localDescription.sdp,
    headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token}});
  if (reply.status !== 201) return "POST " + reply.status + " " + await reply.text();
  await pc.setRemoteDescription({type: "answer", sdp: await reply.text()});
  for (let i = 0; i < 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const stats = await pc.getStats();
    for (const s of stats.values()) {
      if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded > 10) {
        const location = reply.headers.get("Location");
        const bye = await fetch(location, {method: "DELETE",
          headers: {"Authorization": "Bearer " + token}});
        pc.close();
        return [s.framesDecoded, s.frameWidth, bye.status];
      }
    }
  }
  return "no frames decoded, connection " + pc.connectionState;
}"""


@pytest.mark.timeout(90)
async def test_chromium_plays_the_wall_over_whep(server: Huishang, tmp_path: Path) -> None:
    async with chromium(str(tmp_path / "profile"), WEBRTC_ARGS) as context:
        page = await context.new_page()
        await page.goto(server.web_url + "/status")
        result = await page.evaluate(
            WHEP_PLAYER, [server.web_url + "/whep/wall", token(server, WALL)]
        )
    assert isinstance(result, list), result
    decoded, width, deleted = result
    assert decoded > 10 and width == 1920 and deleted == 200
    await wait_for(lambda: gateway(server).views == {}, 10, "the view ended by DELETE")


#: A minimal WHIP publisher in the page: the fake camera and microphone, sendonly, trickle
#: ICE candidates sent by PATCH as they come (RFC 9725 section 4.3.1); returns the resource
#: URL and the PATCH statuses, or an error string.
WHIP_PUBLISHER = """async ([url, token]) => {
  const media = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  const pc = new RTCPeerConnection({bundlePolicy: "max-bundle"});
  for (const track of media.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
  const pending = [];
  let location = null;
  const statuses = [];
  const patch = async (candidate) => {
    const frag = "a=ice-ufrag:" + candidate.usernameFragment
      + "\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\na=mid:0\\r\\na=" + candidate.candidate
      + "\\r\\n";
    const reply = await fetch(location, {method: "PATCH", body: frag, headers: {
      "Content-Type": "application/trickle-ice-sdpfrag", "Authorization": "Bearer " + token}});
    statuses.push(reply.status);
  };
  pc.onicecandidate = (e) => {
    if (!e.candidate || !e.candidate.candidate) return;
    if (location) patch(e.candidate); else pending.push(e.candidate);
  };
  await pc.setLocalDescription(await pc.createOffer());
  const reply = await fetch(url, {method: "POST", body: pc.localDescription.sdp,
    headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token}});
  if (reply.status !== 201) return "POST " + reply.status + " " + await reply.text();
  location = new URL(reply.headers.get("Location"), url).href;
  await pc.setRemoteDescription({type: "answer", sdp: await reply.text()});
  for (const candidate of pending) await patch(candidate);
  for (let i = 0; i < 100 && pc.connectionState !== "connected"; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  window.whipPc = pc;
  return [location, pc.connectionState, statuses];
}"""


@pytest.mark.timeout(90)
async def test_chromium_publishes_over_whip_with_trickle(server: Huishang, tmp_path: Path) -> None:
    async with chromium(str(tmp_path / "profile"), FAKE_DEVICE_ARGS) as context:
        page = await context.new_page()
        await page.goto(server.web_url + "/status")
        result = await page.evaluate(
            WHIP_PUBLISHER, [server.web_url + "/whip", token(server, LIEDE)]
        )
        assert isinstance(result, list), result
        location, state, statuses = result
        assert state == "connected" and statuses and set(statuses) == {204}, result
        await wait_for(lambda: online(server, LIEDE), 10, "猎德街 online from the browser")
        (ingest,) = gateway(server).ingests.values()
        assert ingest.publisher.codecs == {"audio": "opus", "video": "VP8"}
        # its camera is forwarded: a WHEP viewer decodes it
        viewer = await whep_viewer(server, LIEDE, OPERATOR)
        try:
            await wait_for(lambda: len(viewer.marks) > 10, 20, "the browser's camera over WHEP")
            assert viewer.latest is not None and viewer.latest.width > 0
        finally:
            await viewer.close()
        gone = await http("DELETE", location, headers=bearer(server, LIEDE))
        assert gone.status == 200 and not online(server, LIEDE)


async def test_a_vanished_publisher_goes_offline_without_delete(server: Huishang) -> None:
    publisher = await whip_publisher(server, LIEDE, 7)
    await wait_for(lambda: online(server, LIEDE), 10, "online")
    await publisher.close()  # no DELETE: the connection closes under the server
    await wait_for(lambda: not online(server, LIEDE), 30, "offline after the peer vanished")
    assert not published(server, LIEDE) and gateway(server).ingests == {}


async def test_a_terminal_login_replaces_the_whip_session(server: Huishang) -> None:
    publisher = await whip_publisher(server, LIEDE, 7)
    try:
        await wait_for(lambda: published(server, LIEDE), 10, "published")
        terminal = await Client.connect(server.signalling_url, token(server, LIEDE))
        try:
            await wait_for(lambda: not published(server, LIEDE), 10, "the WHIP session ended")
            assert online(server, LIEDE)  # through the terminal now
            assert gateway(server).ingests == {}
        finally:
            await terminal.close()
    finally:
        await publisher.close()


async def test_trickle_patch_and_ice_restart(server: Huishang) -> None:
    publisher = await whip_publisher(server, XIANCUN, 6)
    try:
        url = server.web_url + publisher.location
        (ingest,) = gateway(server).ingests.values()
        ufrag = ingest.publisher.remote_ufrag
        candidate = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"
        fragment = (
            f"a=ice-ufrag:{ufrag}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n{candidate}\r\n"
        )
        kind = "application/trickle-ice-sdpfrag"
        ok = await http(
            "PATCH", url, body=fragment, content_type=kind, headers=bearer(server, XIANCUN)
        )
        assert ok.status == 204, ok
        restart = fragment.replace(f"ice-ufrag:{ufrag}", "ice-ufrag:n3wU")
        refused = await http(
            "PATCH",
            url,
            body=restart,
            content_type=kind,
            headers={**bearer(server, XIANCUN), "If-Match": "*"},
        )
        assert refused.status == 422 and "ICE restart" in refused.text
        stale = await http(
            "PATCH",
            url,
            body=fragment,
            content_type=kind,
            headers={**bearer(server, XIANCUN), "If-Match": '"0"'},
        )
        assert stale.status == 412
        garbage = await http(
            "PATCH", url, body="hello", content_type=kind, headers=bearer(server, XIANCUN)
        )
        assert garbage.status == 400
        wrong_type = await http(
            "PATCH", url, body=fragment, content_type="text/plain", headers=bearer(server, XIANCUN)
        )
        assert wrong_type.status == 415
        assert wrong_type.headers["Accept-Patch"] == kind
        other = await http(
            "PATCH", url, body=fragment, content_type=kind, headers=bearer(server, LIEDE)
        )
        assert other.status == 403
        assert publisher.pc.connectionState == "connected"  # none of it broke the session
    finally:
        await publisher.close()


# -- bad input -------------------------------------------------------------------------------


async def test_refusals(server: Huishang) -> None:
    base = server.web_url
    offer_pc = new_pc()
    offer_pc.addTransceiver("video", direction="recvonly")
    await offer_pc.setLocalDescription(await offer_pc.createOffer())
    recv_offer = offer_pc.localDescription.sdp
    await offer_pc.close()
    sdp = "application/sdp"
    try:
        missing = await http("POST", base + "/whip", body=recv_offer, content_type=sdp)
        assert missing.status == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = await http(
            "POST",
            base + "/whip",
            body=recv_offer,
            content_type=sdp,
            headers={"Authorization": "Bearer nope"},
        )
        assert wrong.status == 401 and "invalid_token" in wrong.headers["WWW-Authenticate"]
        bad = await http(
            "POST",
            base + "/whip",
            body="v=0\r\nthis is no sdp",
            content_type=sdp,
            headers=bearer(server, ZHUJI),
        )
        assert bad.status == 400 and "SDP" in bad.text, bad.text
        empty = await http(
            "POST", base + "/whip", body="", content_type=sdp, headers=bearer(server, ZHUJI)
        )
        assert empty.status == 400 and "empty" in empty.text
        recv = await http(
            "POST", base + "/whip", body=recv_offer, content_type=sdp, headers=bearer(server, ZHUJI)
        )
        assert recv.status == 400 and "recvonly" in recv.text, recv.text
        media_type = await http(
            "POST",
            base + "/whip",
            body=recv_offer,
            content_type="text/plain",
            headers=bearer(server, ZHUJI),
        )
        assert media_type.status == 415 and media_type.headers["Accept-Post"] == sdp
        wall = await http(
            "POST", base + "/whip", body=recv_offer, content_type=sdp, headers=bearer(server, WALL)
        )
        assert wall.status == 403
        site = await http(
            "POST",
            base + f"/whep/{LIEDE}",
            body=recv_offer,
            content_type=sdp,
            headers=bearer(server, ZHUJI),
        )
        assert site.status == 403  # a terminal watches the wall or the programme only
        unknown = await http(
            "POST",
            base + "/whep/tianhe.nowhere",
            body=recv_offer,
            content_type=sdp,
            headers=bearer(server, CHAIR),
        )
        assert unknown.status == 404
        sendonly = recv_offer.replace("a=recvonly", "a=sendonly")
        whep_send = await http(
            "POST",
            base + "/whep/wall",
            body=sendonly,
            content_type=sdp,
            headers=bearer(server, CHAIR),
        )
        assert whep_send.status == 400 and "recvonly" in whep_send.text
        no_resource = await http(
            "DELETE", base + "/whip/nothing-here", headers=bearer(server, ZHUJI)
        )
        assert no_resource.status == 404
        no_view = await http(
            "DELETE", base + "/whep/wall/nothing-here", headers=bearer(server, ZHUJI)
        )
        assert no_view.status == 404
        unauthorised = await http("DELETE", base + "/whip/nothing-here")
        assert unauthorised.status == 401
        # nothing of it left a session, a publication or a site online behind
        assert gateway(server).ingests == {} and gateway(server).views == {}
        assert not online(server, ZHUJI)
    finally:
        await offer_pc.close()


async def test_options_and_ice_servers_in_link_headers(demo_config: HuishangConfig) -> None:
    turn = IceServer(("turn:turn.example.net:3478?transport=udp",), "huishang", 'se"cret')
    config = dataclasses.replace(
        demo_config, ice=IceConfig(servers=(turn,), host_addresses=("127.0.0.1",))
    )
    app = await Huishang.open(config=config)
    try:
        preflight = await http("OPTIONS", app.web_url + "/whip")
        assert preflight.status == 204
        assert "POST" in preflight.headers["Allow"] and preflight.links == []
        assert preflight.headers["Access-Control-Allow-Origin"] == "*"
        authorised = await http("OPTIONS", app.web_url + "/whip", headers=bearer(app, ZHUJI))
        assert authorised.status == 204
        (link,) = authorised.links
        assert link.startswith("<turn:turn.example.net:3478?transport=udp>")
        assert 'rel="ice-server"' in link and 'username="huishang"' in link
        assert 'credential="se\\"cret"' in link
        wrong = await http(
            "OPTIONS", app.web_url + "/whep/wall", headers={"Authorization": "Bearer x"}
        )
        assert wrong.status == 401
    finally:
        await app.close()


def test_trickle_fragments_are_parsed_or_refused_with_a_reason() -> None:
    fragment = parse_trickle_fragment(
        "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
        "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n"
        "a=end-of-candidates\r\n"
    )
    assert fragment.ufrag == "EsAw" and fragment.pwd == "P2uYro0UCOQ4zxjKXaWCBui1"
    assert fragment.candidates == (
        "candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0",
    )
    assert fragment.end
    empty = parse_trickle_fragment("")
    assert empty == TrickleFragment(None, None, (), False)
    with pytest.raises(ValueError, match="line 1"):
        parse_trickle_fragment("hello")
    with pytest.raises(ValueError, match="bad ICE candidate"):
        parse_trickle_fragment("a=candidate:nonsense")
