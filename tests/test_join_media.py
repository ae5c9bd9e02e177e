"""``huishang join`` with media, and :class:`signalling.terminal.MediaTerminal` under it,
against the real server: the programme arrives (frames per second printed once a second),
a file source reaches the chair, ``pause`` is obeyed (its ``video_limit`` too: what the relay
gets from a site shown only in a small wall tile is that small), ``--no-media`` stays
signalling-only."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from bridge.labels import rgb_to_yuv
from bridge.peer import Answer
from bridge.rtp import is_vp8_keyframe, parse_rtp, parse_vp8_descriptor
from bridge.slot import Slot
from bridge.testkit import LoopbackClient, MarkedVideoTrack, RecordingPort, record_slot, wait_for
from signalling.client import Client
from signalling.source import LoopingPlayer, TestPattern
from signalling.terminal import MediaTerminal
from web.app import Huishang

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
CHAIR, ZHUJI, XIANCUN = "tianhe", "tianhe.zhuji", "tianhe.xiancun"


@dataclass
class AiortcTerminal:
    """A bridge/testkit peer offering through signalling, like tests/test_media_server.py."""

    signalling: Client
    media: LoopbackClient

    def main_frames(self) -> int:
        received = self.media.video.get(self.media.mid_of("main", "video"))
        return len(received.frames) if received else 0

    async def close(self) -> None:
        await self.media.close()
        await self.signalling.close()


async def aiortc_terminal(app: Huishang, site: str, tag: int) -> AiortcTerminal:
    token = app.token_for(site)  # type: ignore[arg-type]
    assert token is not None
    client = await Client.connect(app.signalling_url, token)
    media = LoopbackClient()
    media.send(MarkedVideoTrack(tag), audio=True)
    await media.pc.setLocalDescription(await media.pc.createOffer())
    reply = await client.request({"type": "offer", "sdp": media.pc.localDescription.sdp})
    await media.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    media.answer = Answer(reply["sdp"], reply["slots"])
    await wait_for(lambda: media.pc.connectionState == "connected", 20, f"{site} connected")
    return AiortcTerminal(client, media)


@pytest.fixture
async def terminals(server: Huishang) -> AsyncIterator[list[AiortcTerminal]]:
    made: list[AiortcTerminal] = []
    yield made
    for t in made:
        with contextlib.suppress(Exception):
            await t.close()


class Join:
    """``huishang join`` as a subprocess; its stdout JSON lines are collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, *args: str) -> Join:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "web.cli",
            "join",
            *args,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(raw))

    def media(self) -> list[dict[str, Any]]:
        return [line["media"] for line in self.lines if "media" in line]

    async def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for the exit; returns (exit status, stderr)."""
        assert self.process.stderr is not None
        err = await asyncio.wait_for(self.process.stderr.read(), timeout)
        code = await asyncio.wait_for(self.process.wait(), timeout)
        await self.reader
        return code, err.decode()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


def write_y4m(path: Path, rgb: tuple[int, int, int], frames: int = 30) -> Path:
    y, u, v = rgb_to_yuv(rgb)
    w, h = 320, 240
    frame = (
        b"FRAME\n" + bytes([y]) * (w * h) + bytes([u]) * (w * h // 4) + bytes([v]) * (w * h // 4)
    )
    path.write_bytes(f"YUV4MPEG2 W{w} H{h} F30:1 Ip A1:1 C420jpeg\n".encode() + frame * frames)
    return path


async def test_join_reports_the_floor_holders_frames(
    server: Huishang, terminals: list[AiortcTerminal]
) -> None:
    floor = await aiortc_terminal(server, XIANCUN, tag=3)
    terminals.append(floor)
    chair = await Client.connect(server.signalling_url, server.token_for(CHAIR))  # type: ignore[arg-type]
    await chair.request({"type": "floor", "site": XIANCUN})
    join = await Join.start(
        "--url", server.join_url(ZHUJI), "--source", "testsrc", "--seconds", "6"
    )
    try:
        code, err = await join.finish()
    finally:
        join.kill()
        await chair.close()
    assert code == 0, err
    reports = [m for m in join.media() if "main_fps" in m]
    assert reports, join.lines
    assert max(m["main_fps"] for m in reports) > 0, reports
    assert reports[-1]["main"] == "冼村街"
    assert reports[-1]["state"] == "connected"
    assert any(line.get("type") == "slots" for line in join.lines)


async def test_join_sends_a_file_to_the_chair(
    server: Huishang, terminals: list[AiortcTerminal], tmp_path: Path
) -> None:
    chair = await aiortc_terminal(server, CHAIR, tag=1)
    terminals.append(chair)
    clip = write_y4m(tmp_path / "clip.y4m", (200, 30, 30))
    join = await Join.start(
        "--url", server.join_url(ZHUJI), "--source", f"file:{clip}", "--seconds", "30"
    )
    try:
        await chair.signalling.next_event(
            "site", timeout=30, where=lambda e: e["site"]["id"] == ZHUJI and e["site"]["online"]
        )
        await wait_for(lambda: any("slots" in m for m in join.media()), 30, "join's answer")
        await chair.signalling.request({"type": "floor", "site": ZHUJI})
        # the clip is one second long: 75 frames means it looped twice without a stall
        await wait_for(lambda: chair.main_frames() > 75, 30, "the file's frames at the chair")
        join.process.send_signal(signal.SIGINT)  # leaves cleanly
        code, err = await join.finish()
        assert code == 0, err
        assert join.media()[0]["source"] == f"file:{clip}"
    finally:
        join.kill()


async def test_media_terminal_obeys_pause(
    server: Huishang, terminals: list[AiortcTerminal]
) -> None:
    chair = await aiortc_terminal(server, CHAIR, tag=1)
    terminals.append(chair)
    client = await Client.connect(server.signalling_url, server.token_for(ZHUJI))  # type: ignore[arg-type]
    seen: list[str] = []
    client.on_event = lambda e: seen.append(e["type"])  # kept: the terminal chains it
    terminal = MediaTerminal(client, video=TestPattern("珠吉街"), audio=AudioStreamTrack())
    try:
        slots = await terminal.start()
        assert sorted(slots.values()) == ["main", "main"]
        # Nobody watches 珠吉街: it is paused and hands its encoder nothing.
        await wait_for(lambda: terminal.paused["video"], 15, "pause")
        assert terminal.video is not None
        dropped = terminal.video.dropped
        await wait_for(lambda: terminal.video.dropped > dropped + 10, 15, "frames dropped")
        await wait_for(lambda: terminal.main_video_fps() > 0, 15, "the chair on main")
        assert terminal.labels["main"] == "天河区应急指挥中心"
        # The floor: resumed, and the chair receives it.
        await chair.signalling.request({"type": "floor", "site": ZHUJI})
        await wait_for(lambda: not terminal.paused["video"], 15, "resume")
        before = chair.main_frames()
        await wait_for(lambda: chair.main_frames() > before + 30, 20, "珠吉街 at the chair")
        assert "pause" in seen and "slots" in seen
    finally:
        await terminal.close()
        await client.close()
    assert client.on_event is not None and client.on_event.__name__ == "<lambda>"


def keyframe_sizes(port: RecordingPort) -> list[tuple[int, int, int]]:
    """(RTP timestamp, width, height) of each VP8 keyframe the port got (RFC 6386 9.1: the
    keyframe header after the 3-byte tag and the start code carries 14-bit sizes)."""
    out = []
    for data in port.sent:
        packet = parse_rtp(data, {})
        if is_vp8_keyframe(packet.payload):
            frame = packet.payload[parse_vp8_descriptor(packet.payload).size :]
            width = int.from_bytes(frame[6:8], "little") & 0x3FFF
            height = int.from_bytes(frame[8:10], "little") & 0x3FFF
            out.append((packet.timestamp, width, height))
    return out


def frame_timestamps(port: RecordingPort, since: int = 0) -> list[int]:
    """RTP timestamps of the frames (marker packets) the port got from index *since* on."""
    return [p.timestamp for p in (parse_rtp(d, {}) for d in port.sent[since:]) if p.marker]


async def test_media_terminal_obeys_the_video_limit(
    server: Huishang, terminals: list[AiortcTerminal]
) -> None:
    """Shown only in a 25-tile wall, 珠吉街's 640x360 camera reaches the relay at the tile's
    360x202 (and at 15 fps once 16 tiles have a source); given the floor (the chair's main
    shows it), at 640x360 and 30 fps again."""
    media_chair = await aiortc_terminal(server, CHAIR, tag=1)
    terminals.append(media_chair)
    chair = media_chair.signalling
    client = await Client.connect(server.signalling_url, server.token_for(ZHUJI))  # type: ignore[arg-type]
    terminal = MediaTerminal(client, video=TestPattern("珠吉街"), audio=AudioStreamTrack())
    slot = Slot("probe", "video")
    try:
        await terminal.start()
        await wait_for(lambda: terminal.paused["video"], 15, "paused: nobody needs it")
        await chair.request(
            {"type": "layout", "layout": {"kind": "25", "tiles": [{"source": ZHUJI}]}}
        )
        await wait_for(lambda: not terminal.paused["video"], 15, "resumed for the wall")
        # 1920x1080, band of 64 px, 5x5 tiles of 384x202: letterboxed, at most 202 lines show
        assert terminal.video_limit == {"height": 202, "fps": 30}
        publication = server.media.publication(ZHUJI, "video")
        assert publication is not None
        port = record_slot(slot)
        slot.switch(publication)  # a bare relay slot: the conference does not see it
        await wait_for(lambda: (360, 202) in [k[1:] for k in keyframe_sizes(port)], 20, "202 lines")

        streets = [
            s for s in server.conference.sites if s.startswith("tianhe.") and "." not in s[7:]
        ]
        tiles = [{"source": ZHUJI}, *[{"source": s} for s in streets if s != ZHUJI][:15]]
        await chair.request({"type": "layout", "layout": {"kind": "25", "tiles": tiles}})
        await wait_for(lambda: terminal.video_limit.get("fps") == 15, 15, "15 fps asked")
        start = len(port.sent)
        await wait_for(lambda: len(frame_timestamps(port, start)) > 20, 20, "frames at 15 fps")
        steps = sorted(b - a for a, b in itertools.pairwise(frame_timestamps(port, start)[5:]))
        assert abs(steps[len(steps) // 2] - 6000) <= 6  # 15 fps: every other camera frame

        await chair.request({"type": "floor", "site": ZHUJI})
        await wait_for(lambda: terminal.video_limit == {}, 15, "limit lifted by the floor")
        await wait_for(lambda: keyframe_sizes(port)[-1][1:] == (640, 360), 20, "360p again")
        start = len(port.sent)
        await wait_for(lambda: len(frame_timestamps(port, start)) > 10, 20, "frames at 30 fps")
        steps = sorted(b - a for a, b in itertools.pairwise(frame_timestamps(port, start)))
        assert abs(steps[len(steps) // 2] - 3000) <= 3  # 30 fps (a clock rounding apart)
    finally:
        slot.close()
        await terminal.close()
        await client.close()


async def test_media_terminal_ignores_bad_video_limits(server: Huishang) -> None:
    """A `video_limit` that is not a positive number is ignored, the rest applied."""
    client = await Client.connect(server.signalling_url, server.token_for(ZHUJI))  # type: ignore[arg-type]
    terminal = MediaTerminal(client, video=TestPattern("x"))
    try:
        for bad in (
            {"height": 0},
            {"height": -5, "fps": "x"},
            {"height": True},
            "216",
            None,
            {"height": float("inf"), "fps": float("nan")},
        ):
            terminal.handle({"type": "pause", "video": False, "audio": False, "video_limit": bad})
            assert terminal.video_limit == {}
            assert terminal.video is not None and terminal.video.max_height is None
        terminal.handle({"type": "pause", "video_limit": {"height": 180, "fps": "fast"}})
        assert terminal.video_limit == {"height": 180}
        assert terminal.video.max_height == 180 and terminal.video.max_fps is None
        terminal.handle({"type": "pause", "video_limit": {"fps": 10}})
        assert terminal.video.max_height is None and terminal.video.max_fps == 10
    finally:
        await terminal.close()
        await client.close()


async def test_join_without_media_and_with_a_bad_source(server: Huishang) -> None:
    plain = await Join.start("--url", server.join_url(ZHUJI), "--no-media", "--seconds", "2")
    bad = await Join.start(
        "--url", server.join_url(XIANCUN), "--source", "webcam", "--seconds", "2"
    )
    try:
        code, err = await plain.finish()
        assert code == 0, err
        assert any("joined" in line for line in plain.lines)
        assert not plain.media()
        code, err = await bad.finish()
        assert code == 2 and "--source webcam" in err
    finally:
        plain.kill()
        bad.kill()


def test_test_pattern_draws_distinct_frames() -> None:
    pattern = TestPattern("珠吉街", width=320, height=180)
    first, later = (pattern.draw(i).to_ndarray() for i in (0, 45))
    assert first.shape == later.shape == (270, 320)
    assert np.count_nonzero(first != later) > 100  # the moving block and the counter


async def test_a_looping_file_keeps_its_timestamps_rising(tmp_path: Path) -> None:
    clip = write_y4m(tmp_path / "short.y4m", (30, 30, 200), frames=10)
    player = LoopingPlayer(str(clip))
    assert player.video is not None and player.audio is None
    try:
        stamps = [(await player.video.recv()).pts for _ in range(25)]
    finally:
        player.video.stop()
    assert player.passes >= 3
    assert all(b > a for a, b in itertools.pairwise(stamps)), stamps
    steps = {b - a for a, b in itertools.pairwise(stamps)}
    assert len(steps) == 1, steps  # one frame interval across the seams too
