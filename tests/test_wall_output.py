"""The wall output end to end through the real server: four aiortc publishers (each painting
its own tag and frame index) → decoded feeds → compositor → one VP8 encode → the relay → an
aiortc wall client (the ``tianhe.wall`` site), which decodes the wall and finds each source's
mark inside its tile. Tile rects come from ``GET /api/layout-geometry``, so the test also
checks that the endpoint agrees with what the compositor really draws."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import cv2
import numpy as np
import numpy.typing as npt
import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from bridge.compositor import CompositorConfig, TileSpec
from bridge.encoder import EncoderConfig, Vp8Encoder
from bridge.layout import Rect
from bridge.peer import Answer
from bridge.scaler import FitMode, plan_tile
from bridge.testkit import LoopbackClient, MarkedVideoTrack, wait_for
from bridge.wall import WallConfig, WallOutput
from signalling.client import Client, ClientError
from web.app import Huishang

ZHUJI, XIANCUN, LIEDE, SHAHE = "tianhe.zhuji", "tianhe.xiancun", "tianhe.liede", "tianhe.shahe"
SOURCES = (ZHUJI, XIANCUN, LIEDE, SHAHE)
TAGS = {ZHUJI: 5, XIANCUN: 6, LIEDE: 7, SHAHE: 9}
OPERATOR, WALL = "tianhe.operator", "tianhe.wall"
SRC_W, SRC_H = 320, 240  # MarkedVideoTrack's size

U8 = npt.NDArray[np.uint8]


# -- helpers ---------------------------------------------------------------------------------


def read_mark_in(y: U8, rect: Rect) -> int:
    """bridge.testkit.read_mark, on the part of a decoded wall's luma where one source lies."""
    area = y[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w]
    block = rect.w // 16
    top, bottom = int(rect.h * 0.35), int(rect.h * 0.65)
    value = 0
    for bit in range(16):
        x0 = bit * block + block // 4
        x1 = (bit + 1) * block - block // 4
        value = (value << 1) | int(area[top + 4 : bottom - 4, x0:x1].mean() > 128)
    return value


def picture_rect(tile: Rect) -> Rect:
    """Where the compositor puts a 320x240 source inside ``tile`` (letterboxed)."""
    return plan_tile(tile, SRC_W, SRC_H, FitMode.LETTERBOX).dst


@dataclass
class WallClient:
    """An aiortc wall display: recvonly offer over signalling, keeps the latest frame."""

    signalling: Client
    pc: RTCPeerConnection
    frames: int = 0
    latest: VideoFrame | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    watchers: list[Callable[[U8], None]] = field(default_factory=list)  # called per frame

    def luma(self) -> U8:
        frame = self.latest
        assert frame is not None, "no wall frame decoded yet"
        plane = frame.planes[0]
        y = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)
        return np.array(y[:, : frame.width])

    async def consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame):
                    self.latest = frame
                    self.frames += 1
                    if self.watchers:
                        luma = self.luma()
                        for watcher in self.watchers:
                            watcher(luma)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()
        await self.signalling.close()


async def wall_client(app: Huishang) -> WallClient:
    token = app.token_for(WALL)  # type: ignore[arg-type]
    assert token is not None
    signalling = await Client.connect(app.signalling_url, token)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    client = WallClient(signalling, pc)
    pc.on("track", lambda track: client.tasks.append(asyncio.ensure_future(client.consume(track))))
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    reply = await signalling.request({"type": "offer", "sdp": pc.localDescription.sdp})
    assert set(reply["slots"].values()) == {"main"}
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    await wait_for(lambda: pc.connectionState == "connected", 20, "wall client connected")
    return client


@dataclass
class Publisher:
    site: str
    signalling: Client
    media: LoopbackClient

    async def close(self) -> None:
        await self.media.close()
        await self.signalling.close()


async def publisher(app: Huishang, site: str) -> Publisher:
    token = app.token_for(site)  # type: ignore[arg-type]
    assert token is not None
    signalling = await Client.connect(app.signalling_url, token)
    media = LoopbackClient()
    media.send(MarkedVideoTrack(TAGS[site], SRC_W, SRC_H), audio=False)
    await media.pc.setLocalDescription(await media.pc.createOffer())
    reply = await signalling.request({"type": "offer", "sdp": media.pc.localDescription.sdp})
    await media.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    media.answer = Answer(reply["sdp"], reply["slots"])
    await wait_for(lambda: media.pc.connectionState == "connected", 20, f"{site} connected")
    return Publisher(site, signalling, media)


async def geometry(app: Huishang, kind: str) -> list[Rect]:
    """The tile rects the server says the 1920x1080 wall draws."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{app.web_url}/api/layout-geometry",
            params={"kind": kind, "w": "1920", "h": "1080", "output": "wall"},
        ) as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert body["band"] > 0 and body["output"] == "wall"
    return [Rect(*r) for r in body["rects"]]


def layout(kind: str, *sources: str | None) -> dict[str, Any]:
    return {
        "type": "layout",
        "layout": {"output": "wall", "kind": kind, "tiles": [{"source": s} for s in sources]},
    }


async def tile_marks(wall: WallClient, tiles: list[Rect]) -> list[int]:
    await wait_for(lambda: wall.latest is not None, 20, "a wall frame")
    y = wall.luma()
    return [read_mark_in(y, picture_rect(t)) for t in tiles]


async def wait_tags(
    wall: WallClient, tiles: list[Rect], want: list[int | None], what: str, timeout: float = 25
) -> list[int]:
    """Wait until tile i shows a mark with tag ``want[i]`` (None: not checked)."""
    deadline = time.monotonic() + timeout
    marks: list[int] = []
    while time.monotonic() < deadline:
        if wall.latest is not None:
            marks = await tile_marks(wall, tiles)
            if all(w is None or m >> 12 == w for m, w in zip(marks, want, strict=True)):
                return marks
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: tags {[m >> 12 for m in marks]}")


@pytest.fixture
async def operator(server: Huishang) -> AsyncIterator[Client]:
    token = server.token_for(OPERATOR)  # type: ignore[arg-type]
    assert token is not None
    client = await Client.connect(server.signalling_url, token)
    yield client
    await client.close()


# -- tests -----------------------------------------------------------------------------------


async def test_four_sources_reach_their_tiles_and_follow_layout_changes(
    server: Huishang, operator: Client
) -> None:
    publishers = [await publisher(server, s) for s in SOURCES]
    wall = await wall_client(server)
    try:
        await operator.request(layout("4", *SOURCES))
        tiles = await geometry(server, "4")
        assert len(tiles) == 4 and tiles[0].y > 0  # tiles start below the banner band
        output = server.walls.outputs["wall"]  # type: ignore[union-attr]
        first = await wait_tags(wall, tiles, [TAGS[s] for s in SOURCES], "four tiles")
        assert list(output.compositor.tile_rects()) == tiles
        # every tile keeps moving: frame indices advance
        await asyncio.sleep(1.0)
        later = await wait_tags(wall, tiles, [TAGS[s] for s in SOURCES], "four tiles again")
        assert all(a & 0xFFF != b & 0xFFF for a, b in zip(first, later, strict=True))
        # one decoder per shown feed, nothing else decoded
        assert set(server.walls.feeds.decoding) == set(SOURCES)  # type: ignore[union-attr]

        # the operator switches to one tile: the wall client sees the new geometry
        await operator.request(layout("1", LIEDE))
        big = await geometry(server, "1")
        assert big[0].w > tiles[0].w * 1.5
        await wait_tags(wall, big, [TAGS[LIEDE]], "layout 1")
        await wait_for(
            lambda: set(server.walls.feeds.decoding) == {LIEDE},  # type: ignore[union-attr]
            10,
            "decoding only the shown feed",
        )
    finally:
        await wall.close()
        for p in publishers:
            await p.close()


async def test_a_vanished_publisher_shows_the_placeholder_while_others_update(
    server: Huishang, operator: Client
) -> None:
    publishers = [await publisher(server, s) for s in SOURCES]
    wall = await wall_client(server)
    try:
        await operator.request(layout("4", *SOURCES))
        tiles = await geometry(server, "4")
        await wait_tags(wall, tiles, [TAGS[s] for s in SOURCES], "four tiles")
        gone = publishers[1]
        await gone.close()  # 冼村街 drops off without a goodbye
        lost = picture_rect(tiles[1])

        def placeholder_shown() -> bool:
            if wall.latest is None:
                return False
            return read_mark_in(wall.luma(), lost) >> 12 != TAGS[XIANCUN]

        await wait_for(placeholder_shown, 20, "the vanished source's tile changes")
        t = tiles[1]
        region = (slice(t.y, t.y + t.h), slice(t.x, t.x + t.w))
        # The placeholder stands still: "no signal" after 2 s, then "offline" once the
        # connection is known gone (later on a loaded machine), then no change at all.
        # Two pictures 1.5 s apart must agree within a few tries while the wall keeps coming.
        diffs: list[float] = []
        for _ in range(6):
            await asyncio.sleep(1.0)  # let the placeholder settle (VP8 refines it)
            before, marks_before = wall.luma(), await tile_marks(wall, tiles)
            count = wall.frames
            await asyncio.sleep(1.5)
            await wait_for(lambda c=count: wall.frames > c + 10, 15, "the wall keeps coming")
            after, marks_after = wall.luma(), await tile_marks(wall, tiles)
            diff = np.abs(before[region].astype(np.int16) - after[region].astype(np.int16))
            diffs.append(float(diff.mean()))
            if diffs[-1] < 2.0:
                break
        assert diffs[-1] < 2.0, diffs  # the placeholder stands still
        assert marks_after[1] >> 12 != TAGS[XIANCUN]
        for i in (0, 2, 3):  # the others keep updating
            assert marks_after[i] >> 12 == TAGS[SOURCES[i]]
            assert marks_after[i] & 0xFFF != marks_before[i] & 0xFFF
    finally:
        await wall.close()
        for p in publishers:
            if p is not publishers[1]:
                await p.close()


async def test_bad_layouts_are_refused_and_the_wall_keeps_going(
    server: Huishang, operator: Client
) -> None:
    source = await publisher(server, ZHUJI)
    wall = await wall_client(server)
    try:
        await operator.request(layout("1", ZHUJI))
        tiles = await geometry(server, "1")
        await wait_tags(wall, tiles, [TAGS[ZHUJI]], "the one tile")
        overlapping = {
            "type": "layout",
            "layout": {
                "output": "wall",
                "kind": "custom",
                "tiles": [
                    {"source": ZHUJI, "rect": [0, 0, 0.6, 1]},
                    {"source": None, "rect": [0.5, 0, 0.5, 1]},
                ],
            },
        }
        refusals = [
            (overlapping, "bad_request"),
            (layout("4", "tianhe.nowhere"), "not_found"),
            ({"type": "preset_load", "name": "没有这个预设"}, "not_found"),
            (layout("4", WALL), "bad_request"),  # the wall shows no video of its own
        ]
        for request, code in refusals:
            with pytest.raises(ClientError) as info:
                await operator.request(request)
            assert info.value.code == code, (request, info.value)
        count = wall.frames
        await wait_for(lambda: wall.frames > count + 15, 15, "wall frames after the refusals")
        await wait_tags(wall, tiles, [TAGS[ZHUJI]], "the layout unchanged")
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{server.web_url}/api/layout-geometry",
                params={
                    "kind": "custom",
                    "output": "wall",
                    "rects": json.dumps([[0, 0, 0.6, 1], [0.5, 0, 0.5, 1]]),
                },
            ) as response,
        ):
            assert response.status == 400
            assert (await response.json())["error"] == "overlap"
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{server.web_url}/api/layout-geometry", params={"kind": "4", "output": "nope"}
            ) as response,
        ):
            assert response.status == 404
    finally:
        await wall.close()
        await source.close()


async def test_an_unwatched_output_does_not_encode(server: Huishang, operator: Client) -> None:
    output = server.walls.outputs["wall"]  # type: ignore[union-attr]
    source = await publisher(server, ZHUJI)
    try:
        await operator.request(layout("1", ZHUJI))
        await asyncio.sleep(0.5)
        assert output.stats.frames == 0 and output.stats.idle_ticks > 0
        wall = await wall_client(server)
        await wait_for(lambda: wall.frames > 5, 20, "wall frames once watched")
        assert output.stats.keyframes >= 1
        await wall.close()
        await wait_for(lambda: not output.watched, 10, "no display left")
        await asyncio.sleep(0.5)  # a frame already being made when the display left
        frames = output.stats.frames
        await asyncio.sleep(0.5)
        assert output.stats.frames == frames
    finally:
        await source.close()


async def test_a_polled_tile_is_decoded_ahead_and_never_shows_grey(
    server: Huishang, operator: Client
) -> None:
    publishers = [await publisher(server, s) for s in (ZHUJI, XIANCUN)]
    wall = await wall_client(server)
    feeds = server.walls.feeds  # type: ignore[union-attr]
    try:
        await operator.request(layout("1", ZHUJI))
        tiles = await geometry(server, "1")
        await wait_tags(wall, tiles, [TAGS[ZHUJI]], "the first polled site")
        assert set(feeds.decoding) == {ZHUJI}
        seen: list[int] = []
        box = picture_rect(tiles[0])
        wall.watchers.append(lambda y: seen.append(read_mark_in(y, box) >> 12))
        await operator.request(
            {"type": "poll", "target": 0, "sites": [ZHUJI, XIANCUN], "interval_s": 3}
        )
        # the next site is decoded before the switch (plan.upcoming)
        await wait_for(lambda: XIANCUN in feeds.decoding, 2.5, "the next site decoded early")
        assert TAGS[XIANCUN] not in seen  # not switched yet
        await wait_for(lambda: TAGS[XIANCUN] in seen, 15, "the poll switches the tile")
        await wait_for(lambda: seen[-10:].count(TAGS[XIANCUN]) == 10, 15, "frames after it")
        await operator.request({"type": "poll", "target": 0, "sites": []})
        # every frame showed one of the two sites: no placeholder, no grey in between
        assert set(seen) <= {TAGS[ZHUJI], TAGS[XIANCUN]}, sorted(set(seen))
    finally:
        await wall.close()
        for p in publishers:
            await p.close()


async def test_keyframe_requests_are_coalesced_and_a_broken_source_does_not_stop_the_wall() -> None:
    config = WallConfig(
        compositor=CompositorConfig(width=320, height=180), idle_when_unwatched=False
    )
    output = WallOutput(config)
    output.set_layout("2", None, [TileSpec("a", "甲"), TileSpec("b", "乙")])
    output.start()
    try:
        await wait_for(lambda: output.stats.frames >= 3, 10, "first frames")
        assert output.stats.keyframes == 1  # the first frame only
        for _ in range(5):  # five displays ask at once (PLI through the publication)
            output.request_keyframe()
        frames = output.stats.frames
        await wait_for(lambda: output.stats.frames >= frames + 10, 10, "frames after")
        assert output.stats.keyframe_requests == 5
        assert output.stats.keyframes == 2  # one forced keyframe answered all five
        # a source sending garbage: its tile shows no signal, the wall goes on
        bad = np.zeros((7, 3), np.uint8)
        output.push("a", (bad, bad, bad), time.monotonic())
        good = np.full((120, 160), 200, np.uint8)
        chroma = np.full((60, 80), 128, np.uint8)
        output.push("b", (good, chroma, chroma), time.monotonic())
        frames = output.stats.frames
        await wait_for(lambda: output.stats.frames >= frames + 10, 10, "frames with bad input")
        assert output.stats.errors == 0
        assert output.compositor.stats.malformed_frames == 1
    finally:
        await output.close()
    assert output.publication.closed


def test_large_layouts_compose_at_their_own_rate() -> None:
    config = WallConfig(fps=30, large_layout_tiles=16, large_layout_fps=15)
    assert config.fps_for(0) == 30
    assert config.fps_for(15) == 30
    assert config.fps_for(16) == 15
    assert config.fps_for(36) == 15
    assert WallConfig(fps=10, large_layout_fps=15).fps_for(25) == 10  # never above fps
    assert WallConfig(large_layout_fps=None).fps_for(36) == 30
    with pytest.raises(ValueError):
        WallConfig(large_layout_fps=0)


def test_a_large_layout_is_composed_at_the_lower_rate() -> None:
    config = WallConfig(fps=30, large_layout_tiles=3, large_layout_fps=10)
    output = WallOutput(config)
    assert output.fps == 30
    output.set_layout("4", None, [TileSpec("a"), TileSpec("b"), TileSpec(None)])
    assert output.fps == 30  # two sources: below the threshold
    output.set_layout("4", None, [TileSpec(s) for s in "abc"])
    assert output.fps == 10
    output.set_layout("1", None, [TileSpec("a")])
    assert output.fps == 30


def test_the_encoder_follows_set_bitrate_with_a_keyframe() -> None:
    rng = np.random.default_rng(3)
    encoder = Vp8Encoder(EncoderConfig(bitrate=4_000_000, min_bitrate=300_000), fps=30)

    def frame(i: int) -> VideoFrame:
        # new blurred noise every frame: no motion to find, the rate limits the size
        noise = rng.integers(0, 256, (270, 320)).astype(np.uint8)
        picture = cv2.GaussianBlur(noise, (0, 0), 2.0)
        picture[180:] = 128
        return VideoFrame.from_ndarray(picture, format="yuv420p")

    sizes = [sum(len(d) for d, _ in encoder.encode(frame(i), at=i / 30)) for i in range(30)]
    assert encoder.set_bitrate(100_000) == 300_000  # clamped to min_bitrate
    assert encoder.set_bitrate(10_000_000) == 4_000_000  # and to bitrate
    assert encoder.set_bitrate(400_000) == 400_000
    out = [encoder.encode(frame(i), at=i / 30) for i in range(30, 60)]
    assert out[0][0][1]  # the first frame at the new rate is a keyframe
    assert encoder.reopened == 1
    low = [sum(len(d) for d, _ in o) for o in out]
    assert sum(low[10:]) < 0.5 * sum(sizes[10:])


async def test_remb_sets_the_wall_bitrate_within_limits_and_not_too_often() -> None:
    config = WallConfig(
        compositor=CompositorConfig(width=320, height=180),
        encoder=EncoderConfig(bitrate=2_000_000, min_bitrate=500_000),
        bitrate_interval_s=0.3,
        idle_when_unwatched=False,
    )
    output = WallOutput(config)
    output.set_layout("1", None, [TileSpec("a")])
    output.start()
    try:
        await wait_for(lambda: output.stats.frames >= 3, 10, "first frames")
        keyframes = output.stats.keyframes
        output.send_remb(100_000)  # a display on a poor link
        await wait_for(lambda: output.bitrate == 500_000, 5, "the rate to drop to the floor")
        await wait_for(lambda: output.stats.keyframes > keyframes, 5, "the reopened encoder")
        output.send_remb(520_000)  # a small change is not worth a keyframe
        await asyncio.sleep(0.6)
        assert output.bitrate == 500_000
        output.send_remb(50_000_000)  # the link recovered: back to the configured rate
        await wait_for(lambda: output.bitrate == 2_000_000, 5, "the rate to recover")
        assert output.stats.bitrate_changes == 2
        assert output.remb == 50_000_000
    finally:
        await output.close()


def test_encoder_config_is_checked() -> None:
    assert EncoderConfig(bitrate=5_000_000).lowest_bitrate == 1_000_000
    assert EncoderConfig(bitrate=300_000).lowest_bitrate == 100_000
    for bad in (
        {"min_bitrate": 6_000_000},  # above bitrate
        {"min_bitrate": 50_000},
        {"cpu_used": -17},
        {"qmax": 64},
    ):
        with pytest.raises(ValueError):
            EncoderConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        WallConfig(bitrate_step=1.0)
