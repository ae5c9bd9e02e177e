"""RTSP cameras (视频图像接入) through a real RTSP server and the real Huishang server.

The camera is GStreamer's RTSP server (tests/rtsp_camera_server.py, run by Debian's
/usr/bin/python3, which has python3-gi) serving ``videotestsrc pattern=red`` (or ``blue``)
as H.264 on a free loopback port. Solid colours survive H.264 → decode → compose → VP8 →
decode, and the wall's placeholders are grey, so a tile's chroma says what it shows:
red (V high), blue (U high) or a placeholder (neither).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from bridge.camera import (
    CameraConfig,
    CameraState,
    NoVideoError,
    RtspCamera,
    UnknownHostError,
    failure_reason,
    public_url,
)
from bridge.layout import Rect
from bridge.testkit import wait_for
from signalling.client import Client
from signalling.model import SiteId
from web.app import Huishang
from web.cameras import CameraGateway
from web.config import CameraSettings, HuishangConfig

CAM = "tianhe.cam1"
CHAIR, OPERATOR, WALL, ZHUJI = "tianhe", "tianhe.operator", "tianhe.wall", "tianhe.zhuji"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_camera_server.py")
DEBIAN_PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.skipif(
    not Path(DEBIAN_PYTHON).exists(), reason="needs Debian's python3 with python3-gi"
)


# -- the RTSP server -------------------------------------------------------------------------


class RtspServer:
    """tests/rtsp_camera_server.py as a subprocess; counts its connected clients."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""
        self.port = 0
        self.clients = 0
        self.client_counts: list[int] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self, pattern: str, port: int = 0, *extra: str) -> str:
        self.process = await asyncio.create_subprocess_exec(
            DEBIAN_PYTHON,
            str(SERVER_SCRIPT),
            "--port",
            str(port),
            "--path",
            "/cam1",
            "--pattern",
            pattern,
            *extra,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 30)
        assert line.startswith(b"READY "), line
        self.url = line.split()[1].decode()
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        self.clients = 0
        self._reader = asyncio.ensure_future(self._read())
        return self.url

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            if line.startswith(b"CLIENTS "):
                self.clients = int(line.split()[1])
                self.client_counts.append(self.clients)

    def freeze(self, frozen: bool = True) -> None:
        """Stop (SIGSTOP) or continue the server: a camera that hangs with its sockets open."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    async def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.returncode is None:
            process.send_signal(signal.SIGCONT)  # in case it was frozen
            process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            code = await process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        assert code == 0, f"the RTSP server exited with {code}"


@pytest.fixture
async def rtsp() -> AsyncIterator[RtspServer]:
    server = RtspServer()
    try:
        yield server
    finally:
        await server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def open_server(config: HuishangConfig, url: str) -> Huishang:
    cameras = MappingProxyType({SiteId(CAM): CameraSettings(rtsp_url=url, rtsp_transport="tcp")})
    app = await Huishang.open(config=dataclasses.replace(config, cameras=cameras))
    gateway = cameras_of(app)
    camera = gateway.cameras[CAM]
    # quick retries, so a restarted camera is back within a second or two
    camera.config = dataclasses.replace(camera.config, backoff_initial_s=0.3, backoff_max_s=1.0)
    return app


def cameras_of(app: Huishang) -> CameraGateway:
    return next(g for g in app.gateways if isinstance(g, CameraGateway))


async def api_cameras(app: Huishang) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{app.web_url}/api/cameras") as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
    return next(c for c in body["cameras"] if c["site"] == CAM)


async def wait_api(
    app: Huishang, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    entry: dict[str, Any] = {}
    while time.monotonic() < deadline:
        entry = await api_cameras(app)
        if check(entry):
            return entry
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {entry}")


# -- viewers ---------------------------------------------------------------------------------


class Viewer:
    """An aiortc client that receives video slots (``main``, and ``extraN`` for a chair) and
    keeps the latest frame of each."""

    def __init__(self, signalling: Client) -> None:
        self.signalling = signalling
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.latest_by_mid: dict[str, VideoFrame] = {}
        self.slots: dict[str, str] = {}  # mid → slot name
        self.frames = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    @classmethod
    async def join(cls, app: Huishang, site: str, extras: int = 0) -> Viewer:
        token = app.token_for(SiteId(site))
        assert token is not None
        viewer = cls(await Client.connect(app.signalling_url, token))
        viewer.pc.addTransceiver("audio", direction="recvonly")
        for _ in range(1 + extras):
            viewer.pc.addTransceiver("video", direction="recvonly")
        await viewer.pc.setLocalDescription(await viewer.pc.createOffer())
        reply = await viewer.signalling.request(
            {"type": "offer", "sdp": viewer.pc.localDescription.sdp}
        )
        viewer.slots = dict(reply["slots"])
        assert "main" in set(viewer.slots.values())
        await viewer.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        await wait_for(lambda: viewer.pc.connectionState == "connected", 20, f"{site} connected")
        return viewer

    def _on_track(self, track: MediaStreamTrack) -> None:
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        self._tasks.append(asyncio.ensure_future(self._read(transceiver.mid or "?", track)))

    async def _read(self, mid: str, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame):
                    self.latest_by_mid[mid] = frame
                    if self.slots.get(mid) == "main":
                        self.frames += 1

    def latest(self, slot: str = "main") -> VideoFrame | None:
        for mid, name in self.slots.items():  # audio's slot is "main" too: it has no frames
            if name == slot and mid in self.latest_by_mid:
                return self.latest_by_mid[mid]
        return None

    def colour(self, rect: Rect | None = None, slot: str = "main") -> str:
        """ "red", "blue" or "other" for the middle of *rect* (default: the whole frame)."""
        frame = self.latest(slot)
        if frame is None:
            return "none"
        if rect is None:
            rect = Rect(0, 0, frame.width, frame.height)
        x0, y0 = (rect.x + rect.w // 4) // 2, (rect.y + rect.h // 4) // 2
        x1, y1 = (rect.x + 3 * rect.w // 4) // 2, (rect.y + 3 * rect.h // 4) // 2
        means = []
        for index in (1, 2):
            plane = frame.planes[index]
            data = np.frombuffer(memoryview(plane), np.uint8)
            chroma = data.reshape(-1, plane.line_size)[: frame.height // 2, : frame.width // 2]
            means.append(float(chroma[y0:y1, x0:x1].mean()))
        u, v = means
        if v > 190 and u < 110:
            return "red"
        if u > 190 and v < 150:
            return "blue"
        return "other"

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        await self.signalling.close()


async def wall_tile(app: Huishang) -> Rect:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{app.web_url}/api/layout-geometry",
            params={"kind": "1", "w": "1920", "h": "1080", "output": "wall"},
        ) as response,
    ):
        assert response.status == 200
        body = await response.json()
    return Rect(*body["rects"][0])


async def show_on_wall(operator: Client, source: str | None) -> None:
    await operator.request(
        {"type": "layout", "layout": {"output": "wall", "kind": "1", "tiles": [{"source": source}]}}
    )


async def wait_colour(
    viewer: Viewer, want: str, rect: Rect | None, what: str, slot: str = "main"
) -> None:
    await wait_for(lambda: viewer.colour(rect, slot) == want, 40, what)


# -- through the real server -----------------------------------------------------------------


async def test_a_camera_on_the_wall_survives_its_server_restarting(
    demo_config: HuishangConfig, rtsp: RtspServer
) -> None:
    url = await rtsp.start("red")
    app = await open_server(demo_config, url)
    camera = cameras_of(app).cameras[CAM]
    operator = wall = None
    try:
        # Nothing shows the camera: nothing is pulled.
        entry = await api_cameras(app)
        assert entry["state"] == "idle" and entry["reason"] == "not shown, not pulled"
        assert entry["name"] == "天河路口监控" and entry["url"] == url
        assert CAM not in app.media.local_sources  # type: ignore[union-attr]
        wall = await Viewer.join(app, WALL)
        operator = await Client.connect(app.signalling_url, app.token_for(SiteId(OPERATOR)) or "")
        (camera_site,) = [
            s for s in operator.welcome["conference"]["sites"] if s["id"] == CAM
        ]  # the roster knows the camera's state (docs/protocol.md: site state "camera")
        assert camera_site["camera"] == "idle" and camera_site["online"] is False
        tile = await wall_tile(app)
        await wait_for(lambda: wall is not None and wall.frames > 0, 20, "a wall frame")
        assert wall.colour(tile) == "other"  # the empty tile
        assert rtsp.clients == 0 and camera.state is CameraState.IDLE

        # On the wall: pulled, decoded, composed.
        await show_on_wall(operator, CAM)
        await wait_colour(wall, "red", tile, "the camera's red picture in its tile")
        entry = await wait_api(app, lambda e: e["state"] == "live" and e["fps"] > 0, "live")
        assert entry["width"] == 320 and entry["height"] == 240 and entry["attempts"] == 0
        assert rtsp.clients == 1
        assert camera.publisher.stats.encoded == 0  # only the wall shows it: no VP8 encode
        await operator.next_event(
            "site", where=lambda e: e["site"]["id"] == CAM and e["site"]["camera"] == "live"
        )

        # The camera goes away: placeholder, retries, the reason on /api/cameras.
        port = rtsp.port
        await rtsp.stop()
        await wait_for(lambda: wall is not None and wall.colour(tile) == "other", 30, "placeholder")
        entry = await wait_api(
            app,
            lambda e: (
                e["state"] in ("retrying", "connecting")
                and e["reason"] == "connection refused"
                and e["attempts"] >= 2
            ),
            "retrying, connection refused",
        )

        await operator.next_event(
            "site", where=lambda e: e["site"]["id"] == CAM and e["site"]["camera"] == "retrying"
        )

        # It comes back on the same port (now blue): the picture returns by itself.
        await rtsp.start("blue", port=port)
        await wait_colour(wall, "blue", tile, "the camera's new picture")
        await wait_api(app, lambda e: e["state"] == "live", "live again")
        assert camera.connections == 2

        # Off the wall: no longer pulled.
        await show_on_wall(operator, None)
        await wait_api(
            app,
            lambda e: e["state"] == "idle" and e["reason"] == "not shown, not pulled",
            "idle",
        )
        await wait_for(lambda: rtsp.clients == 0, 20, "the RTSP client gone")
        assert CAM not in app.media.local_sources  # type: ignore[union-attr]
    finally:
        if operator is not None:
            await operator.close()
        if wall is not None:
            await wall.close()
        await app.close()


async def test_a_camera_previewed_by_the_chair_and_given_the_floor_reaches_the_terminals(
    demo_config: HuishangConfig, rtsp: RtspServer
) -> None:
    url = await rtsp.start("red")
    app = await open_server(demo_config, url)
    camera = cameras_of(app).cameras[CAM]
    chair = terminal = None
    try:
        terminal = await Viewer.join(app, ZHUJI)
        chair = await Viewer.join(app, CHAIR, extras=1)
        # The chair previews the camera in its extra slot: pulled, encoded once.
        await chair.signalling.request({"type": "preview", "slot": "extra1", "source": CAM})
        await wait_colour(chair, "red", None, "the camera in the chair's preview", "extra1")
        assert camera.publisher.stats.encoded > 0 and rtsp.clients == 1
        assert terminal.colour() != "red"  # the terminals still see the chair (no video)
        # The chair gives the camera the floor: every terminal's main slot carries it, from
        # the same encode (one RTSP client, one publication).
        await chair.signalling.request({"type": "floor", "site": CAM})
        await wait_colour(terminal, "red", None, "the camera in the terminal's main slot")
        await wait_colour(chair, "red", None, "the camera in the chair's main slot")
        assert rtsp.clients == 1 and rtsp.client_counts == [1]
        await chair.signalling.request({"type": "floor", "site": None})
        await chair.signalling.request({"type": "preview", "slot": "extra1", "source": None})
        await wait_for(lambda: camera.state is CameraState.IDLE, 20, "camera idle")
        await wait_for(lambda: rtsp.clients == 0, 20, "the RTSP client gone")
    finally:
        if chair is not None:
            await chair.close()
        if terminal is not None:
            await terminal.close()
        await app.close()


async def test_a_polled_tile_pulls_the_camera_before_its_turn(
    demo_config: HuishangConfig, rtsp: RtspServer
) -> None:
    url = await rtsp.start("red")
    app = await open_server(demo_config, url)
    camera = cameras_of(app).cameras[CAM]
    operator = wall = None
    try:
        wall = await Viewer.join(app, WALL)
        operator = await Client.connect(app.signalling_url, app.token_for(SiteId(OPERATOR)) or "")
        tile = await wall_tile(app)
        await show_on_wall(operator, ZHUJI)
        assert camera.state is CameraState.IDLE
        poll = {"type": "poll", "output": "wall", "target": 0, "sites": [ZHUJI, CAM]}
        await operator.request({**poll, "interval_s": 3})
        # 珠吉街 is on the tile now; the camera is next (plan.upcoming): already pulled
        assert app.conference.layouts["wall"].tiles[0].source == ZHUJI
        assert camera.state is not CameraState.IDLE
        await wait_colour(wall, "red", tile, "the camera's turn")
        await wait_for(lambda: wall is not None and wall.colour(tile) != "red", 20, "珠吉街's turn")
        await wait_colour(wall, "red", tile, "the camera's turn again")
        assert rtsp.client_counts == [1]  # shown or next the whole time: never dropped
        await operator.request({**poll, "sites": [], "interval_s": 3})  # stops the poll
        await show_on_wall(operator, ZHUJI)
        await wait_for(lambda: camera.state is CameraState.IDLE, 20, "camera idle")
    finally:
        if operator is not None:
            await operator.close()
        if wall is not None:
            await wall.close()
        await app.close()


async def test_a_camera_nobody_answers_for_gives_a_clear_reason(
    demo_config: HuishangConfig,
) -> None:
    url = f"rtsp://127.0.0.1:{free_port()}/cam1"  # nobody listens there
    app = await open_server(demo_config, url)
    operator = None
    try:
        operator = await Client.connect(app.signalling_url, app.token_for(SiteId(OPERATOR)) or "")
        await show_on_wall(operator, CAM)
        entry = await wait_api(
            app,
            lambda e: e["reason"] == "connection refused" and e["attempts"] >= 2,
            "connection refused",
        )
        assert entry["state"] in ("retrying", "connecting") and entry["fps"] == 0
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{app.web_url}/healthz") as response,
        ):
            assert response.status == 200  # the server carries on
        assert (await operator.request({"type": "ping"}))["type"] == "ok"
    finally:
        if operator is not None:
            await operator.close()
        await app.close()


# -- the camera alone ------------------------------------------------------------------------


async def test_rtsp_camera_pulls_decodes_and_stops(rtsp: RtspServer) -> None:
    url = await rtsp.start("blue")
    changes: list[CameraState] = []
    camera = RtspCamera(
        "cam", CameraConfig(url, transport="udp"), on_change=lambda c: changes.append(c.state)
    )
    try:
        track = camera.set_decode("video", True)
        assert track is not None and camera.set_decode("audio", True) is None
        camera.want(True)
        frame = await asyncio.wait_for(track.recv(), 30)
        assert isinstance(frame, VideoFrame) and (frame.width, frame.height) == (320, 240)
        await wait_for(lambda: camera.state is CameraState.LIVE, 10, "live")
        assert changes[:2] == [CameraState.CONNECTING, CameraState.LIVE]
        camera.want(False)
        assert camera.state is CameraState.IDLE and camera.reason == "not shown, not pulled"
        await wait_for(lambda: rtsp.clients == 0, 20, "the RTSP client gone")
    finally:
        await camera.close()
    with pytest.raises(MediaStreamError):
        await track.recv()  # the track ended with the camera


async def test_rtsp_camera_that_hangs_times_out_and_recovers(rtsp: RtspServer) -> None:
    url = await rtsp.start("red")
    config = CameraConfig(url, open_timeout_s=1.0, read_timeout_s=1.0, backoff_max_s=1.0)
    camera = RtspCamera("cam", config)
    try:
        camera.want(True)
        await wait_for(lambda: camera.state is CameraState.LIVE, 20, "live")
        rtsp.freeze()  # the camera hangs: its sockets stay open, nothing arrives
        await wait_for(lambda: camera.reason == "timeout", 30, "timeout")
        assert camera.state in (CameraState.RETRYING, CameraState.CONNECTING)
        rtsp.freeze(False)
        await wait_for(lambda: camera.state is CameraState.LIVE, 30, "live again")
        assert camera.connections == 2
    finally:
        await camera.close()


async def test_rtsp_camera_reports_a_missing_stream(rtsp: RtspServer) -> None:
    url = await rtsp.start("red")
    camera = RtspCamera("cam", CameraConfig(url.replace("/cam1", "/nothing-here")))
    try:
        camera.want(True)
        await wait_for(lambda: camera.state is CameraState.RETRYING, 20, "retrying")
        assert camera.reason.startswith("not found") and camera.attempts >= 1
    finally:
        await camera.close()


async def test_rtsp_camera_without_video_says_so(rtsp: RtspServer) -> None:
    url = await rtsp.start("red", 0, "--audio-only")
    camera = RtspCamera("cam", CameraConfig(url))
    try:
        camera.want(True)
        await wait_for(lambda: camera.state is CameraState.RETRYING, 20, "retrying")
        assert camera.reason == "no video stream"
    finally:
        await camera.close()


def test_backoff_is_exponential_capped_and_jittered() -> None:
    config = CameraConfig("rtsp://x/", backoff_initial_s=1.0, backoff_max_s=8.0, backoff_jitter=0.2)
    low = [config.backoff(n, lambda: 0.0) for n in range(1, 8)]
    high = [config.backoff(n, lambda: 1.0) for n in range(1, 8)]
    assert low == pytest.approx([0.8, 1.6, 3.2, 6.4, 6.4, 6.4, 6.4])
    assert high == pytest.approx([1.2, 2.4, 4.8, 9.6, 9.6, 9.6, 9.6])
    with pytest.raises(ValueError, match="transport"):
        CameraConfig("rtsp://x/", transport="http")
    with pytest.raises(ValueError, match="rtsp://"):
        CameraConfig("/etc/passwd")  # never a local file


def test_failure_reasons_read_well() -> None:
    assert failure_reason(ConnectionRefusedError(111, "Connection refused")) == "connection refused"
    assert failure_reason(TimeoutError()) == "timeout"
    assert failure_reason(ValueError("x"), elapsed=5.0, limit=5.0) == "timeout"
    assert failure_reason(OSError(5, "Input/output error")) == "input/output error"
    assert failure_reason(UnknownHostError("cam.example")) == "unknown host 'cam.example'"
    assert failure_reason(NoVideoError()) == "no video stream"
    assert public_url("rtsp://admin:secret@10.0.0.9:554/ch1") == "rtsp://10.0.0.9:554/ch1"
