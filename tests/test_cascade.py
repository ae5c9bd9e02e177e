"""The cascade uplink (级联): province ← city ← district, each a real ``huishang serve`` process.

Each level's configuration is written here: the province knows the city as a site with the
``uplink`` role; the city knows the district the same way and has its own ``[uplink]`` to the
province; the district has an ``[uplink]`` to the city. Terminals at each level are aiortc
clients speaking PROTOCOL.md through the Python client, each painting its own tag into its
frames (bridge.testkit.MarkedVideoTrack), so a decoded picture says whose camera it is.

Also here: the uplink's media peer against a bridge peer in one process (no servers), and the
backoff's shape. Nothing asserts timings; waits have generous limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from bridge.ice import IceConfig, apply_ice_config
from bridge.peer import Peer
from bridge.testkit import Bridge, LoopbackClient, MarkedVideoTrack, wait_for
from bridge.uplink_peer import UplinkPeer
from signalling.client import Client, ClientError
from signalling.model import SiteId
from signalling.uplink import backoff_delay
from web.app import Huishang
from web.tokens import hash_token

ROOT = Path(__file__).resolve().parent.parent

# tags painted into the frames (4 bits)
PROVINCE_CHAIR, CITY_CHAIR, DISTRICT_CHAIR, STREET = 1, 2, 3, 4


# -- the uplink's media peer, in one process ------------------------------------------------


@pytest.fixture
def loopback_ice() -> Iterator[None]:
    undo = apply_ice_config(IceConfig(host_addresses=("127.0.0.1",)))
    try:
        yield
    finally:
        undo()


async def test_uplink_peer_forwards_both_ways_without_a_server(loopback_ice: None) -> None:
    district, upper = Bridge(), Bridge()
    uplink = UplinkPeer("uplink#1", district.relay)
    upper_side = Peer("district-uplink", upper.relay)
    try:
        _, local, _ = await district.publisher(DISTRICT_CHAIR)
        _, remote, _ = await upper.publisher(PROVINCE_CHAIR)
        viewer, viewer_peer = await district.subscriber()
        upper_viewer, upper_viewer_peer = await upper.subscriber()
        answer = await upper_side.answer(await uplink.offer())
        assert sorted(answer.slots.values()) == ["main", "main"]  # audio + video sendrecv
        await uplink.accept(answer.sdp)
        await uplink.connected(20)
        # up: the district's publisher through the uplink's slot to a viewer at the upper level
        up_video, up_audio = uplink.slot("video"), uplink.slot("audio")
        assert up_video is not None and up_audio is not None
        district.relay.route(up_video, local.publication("video"))
        district.relay.route(up_audio, local.publication("audio"))
        upper_main, upper_side_main = (
            upper_viewer_peer.slot("main", "video"),
            upper_side.slot("main", "video"),
        )
        local_main = viewer_peer.slot("main", "video")
        assert upper_main is not None and upper_side_main is not None and local_main is not None
        upper.relay.route(upper_main, upper_side.publication("video"))
        # down: the upper level's programme through the uplink's publication to a local viewer
        upper.relay.route(upper_side_main, remote.publication("video"))
        down = uplink.publication("video")
        assert down is not None
        district.relay.route(local_main, down)
        await wait_for(
            lambda: DISTRICT_CHAIR in _tags(upper_viewer), 30, "the district's picture upstairs"
        )
        await wait_for(lambda: PROVINCE_CHAIR in _tags(viewer), 30, "the upper picture here")
        assert set(_tags(upper_viewer)) == {DISTRICT_CHAIR}
        assert set(_tags(viewer)) == {PROVINCE_CHAIR}
        stats = uplink.stats()
        assert stats["sent"]["video"] > 0 and stats["sent"]["audio"] > 0
        assert stats["received"]["video"] > 0
        # a keyframe request from the upper viewer reaches the district's publisher
        before = local.publication("video").plis_sent  # type: ignore[union-attr]
        upper_main.request_keyframe()
        await wait_for(
            lambda: local.publication("video").plis_sent > before,  # type: ignore[union-attr]
            10,
            "the PLI to travel down to the district's publisher",
        )
    finally:
        await uplink.close()
        await uplink.close()  # idempotent
        await upper_side.close()
        await district.close()
        await upper.close()
    assert uplink.slot("video").closed  # type: ignore[union-attr]
    assert uplink.publication("video").closed  # type: ignore[union-attr]


async def test_uplink_peer_refuses_a_bogus_answer(loopback_ice: None) -> None:
    bridge = Bridge()
    uplink = UplinkPeer("uplink#1", bridge.relay)
    try:
        await uplink.offer()
        with pytest.raises(Exception, match="answer"):
            await uplink.accept("v=0\r\nthis is no SDP\r\n")
    finally:
        await uplink.close()
        await bridge.close()


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    assert backoff_delay(1, 1.0, 30.0, lambda: 0.0) == 0.5
    assert backoff_delay(1, 1.0, 30.0, lambda: 1.0) == 1.0
    assert backoff_delay(3, 1.0, 30.0, lambda: 1.0) == 4.0
    assert backoff_delay(50, 1.0, 30.0, lambda: 1.0) == 30.0
    assert backoff_delay(50, 1.0, 30.0, lambda: 0.0) == 15.0
    delays = {backoff_delay(4, 1.0, 30.0) for _ in range(20)}
    assert len(delays) > 1 and all(4.0 <= d <= 8.0 for d in delays)


# -- two servers in this process: TLS, refused tokens, publishing a wall output ------------


UPPER_SITES = [
    ("gz", "广州市应急指挥中心", "chair", "district"),
    ("gz.tianhe", "天河区", "uplink", "district"),
]
LOWER_SITES = [
    ("tianhe", "天河区应急指挥中心", "chair", "district"),
    ("tianhe.zhuji", "珠吉街", "terminal", "street"),
    ("tianhe.up", "广州市应急指挥中心", "uplink", "uplink"),
]


@asynccontextmanager
async def running(level: LevelConfig) -> AsyncIterator[Huishang]:
    app = await Huishang.open(level.write())
    try:
        yield app
    finally:
        await app.close()


async def uplink_status(app: Huishang, state: str, **where: Any) -> dict[str, Any]:
    """The in-process server's ``GET /api/uplink`` once it is in *state* (and matches *where*)."""
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 45
        while True:
            async with http.get(app.web_url + "/api/uplink") as response:
                status: dict[str, Any] = await response.json()
            if status["state"] == state and all(
                (status[k] >= v if isinstance(v, int) else v in str(status[k]))
                for k, v in where.items()
            ):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"uplink never {state} with {where}: {status}")
            await asyncio.sleep(0.1)


def pair(tmp_path: Path, **uplink: Any) -> tuple[LevelConfig, LevelConfig]:
    upper = LevelConfig("upper", tmp_path / "upper", 0, 0, UPPER_SITES)
    lower = LevelConfig("lower", tmp_path / "lower", 0, 0, LOWER_SITES)
    lower.uplink = {"token": upper.token_for("gz.tianhe"), "site": "tianhe.up", **uplink}
    return upper, lower


async def test_no_uplink_configured(tmp_path: Path) -> None:
    upper, _ = pair(tmp_path)
    async with (
        running(upper) as app,
        aiohttp.ClientSession() as http,
        http.get(app.web_url + "/api/uplink") as response,
    ):
        assert await response.json() == {"configured": False}


async def test_a_refused_token_is_retried_and_said(tmp_path: Path) -> None:
    upper, lower = pair(tmp_path)
    async with running(upper) as up:
        lower.uplink = {**(lower.uplink or {}), "url": up.signalling_url, "token": "wrong"}
        async with running(lower) as app:
            status = await uplink_status(app, "waiting", attempts=2)
            assert "refused this server's token" in status["last_error"]
            assert status["connects"] == 0 and status["upper_site"] is None
            assert not app.conference.online().get(SiteId("tianhe.up"))
            assert "wrong" not in json.dumps(status)


async def test_uplink_over_wss_checks_the_upper_certificate(tmp_path: Path) -> None:
    upper, lower = pair(tmp_path)
    upper.extra = '\n[tls]\nmode = "self-signed"\n'
    async with running(upper) as up:
        assert up.signalling_url.startswith("wss://")
        lower.uplink = {**(lower.uplink or {}), "url": up.signalling_url}
        async with running(lower) as app:  # the system's trust store: refused
            status = await uplink_status(app, "waiting", attempts=1)
            assert "certificate" in status["last_error"].lower()
        cert = upper.folder / "data" / "tls" / "huishang.crt"
        lower.uplink["ca_file"] = str(cert)
        async with running(lower) as app:  # trusting the upper level's own certificate
            status = await uplink_status(app, "up")
            assert status["upper_site"]["id"] == "gz.tianhe"
        del lower.uplink["ca_file"]
        lower.uplink["verify"] = False
        async with running(lower) as app:  # testing only: no check at all
            await uplink_status(app, "up")
            assert SiteId("gz.tianhe") in up.conference.online()
        # closing the lower server leaves the upper level cleanly (no rejoin grace)
        assert SiteId("gz.tianhe") not in up.conference.online()


async def test_two_servers_with_one_token_do_not_fight(tmp_path: Path) -> None:
    upper, lower = pair(tmp_path)
    twin = LevelConfig("twin", tmp_path / "twin", 0, 0, LOWER_SITES)
    async with running(upper) as up:
        lower.uplink = {**(lower.uplink or {}), "url": up.signalling_url, "retry_max_s": 30.0}
        twin.uplink = dict(lower.uplink)
        async with running(lower) as first:
            await uplink_status(first, "up")
            async with running(twin) as second:
                await uplink_status(second, "up")
                status = await uplink_status(first, "waiting", last_error="replaced")
                assert status["retry_in_s"] > 10  # the slow lane: retry_max_s, not 0.5 s
                assert (await uplink_status(second, "up"))["connects"] == 1


async def test_the_upper_programme_on_the_district_wall(tmp_path: Path) -> None:
    upper, lower = pair(tmp_path)
    async with running(upper) as up:
        lower.uplink = {**(lower.uplink or {}), "url": up.signalling_url}
        async with running(lower) as app:
            await uplink_status(app, "up")
            city = await Terminal.join(upper, "gz", CITY_CHAIR, up.signalling_url)
            chair = await Client.connect(app.signalling_url, lower.token_for("tianhe"))
            assert app.media is not None
            peer = app.media.local_decoders[SiteId("tianhe.up")]
            assert isinstance(peer, UplinkPeer) and not peer.decoding("video")
            try:
                layout = {"output": "wall", "kind": "1", "tiles": [{"source": "tianhe.up"}]}
                await chair.request({"type": "layout", "layout": layout})
                walls = app.walls
                assert walls is not None

                def decoded() -> int:
                    reader = walls.feeds.reader("tianhe.up")
                    return reader.frames if reader is not None else 0

                # decoded only now that the wall shows it, through the uplink's own receiver
                await wait_for(lambda: decoded() > 10, 45, "the upper programme on the wall")
                assert peer.decoding("video")
                await chair.request({"type": "layout", "layout": {"kind": "1", "tiles": [{}]}})
                await wait_for(lambda: not peer.decoding("video"), 20, "decoding to stop")
            finally:
                await chair.close()
                await city.close()


async def test_the_district_chair_raises_a_hand_upstairs(tmp_path: Path) -> None:
    upper, lower = pair(tmp_path)
    async with running(upper) as up:
        lower.uplink = {**(lower.uplink or {}), "url": up.signalling_url}
        async with running(lower) as app, aiohttp.ClientSession() as http:
            hand = app.web_url + "/api/uplink/hand"
            chair = {"Authorization": f"Bearer {lower.token_for('tianhe')}"}
            street = {"Authorization": f"Bearer {lower.token_for('tianhe.zhuji')}"}
            async with http.post(hand, json={"up": True}) as response:
                assert response.status == 401
            async with http.post(hand, json={"up": True}, headers=street) as response:
                assert response.status == 403
            async with http.post(hand, json={"up": "yes"}, headers=chair) as response:
                assert response.status == 400
            await uplink_status(app, "up")
            async with http.post(hand, json={"up": True}, headers=chair) as response:
                assert response.status == 200, await response.text()
            assert up.conference.snapshot()["hands"] == ["gz.tianhe"]
            status = await uplink_status(app, "up", hand=True)
            assert not status["have_floor"]
            # the city's chair answers the hand with the floor: the district sees it has it
            city = await Client.connect(up.signalling_url, upper.token_for("gz"))
            try:
                await city.request({"type": "floor", "site": "gz.tianhe"})
                status = await uplink_status(app, "up", have_floor=True)
                assert status["upper_floor"] == "gz.tianhe" and not status["hand"]
            finally:
                await city.close()
        # the link down (the upper server gone): the hand cannot go up
        async with running(lower) as app, aiohttp.ClientSession() as http:
            await up.close()
            await uplink_status(app, "waiting")
            chair = {"Authorization": f"Bearer {lower.token_for('tianhe')}"}
            async with http.post(
                app.web_url + "/api/uplink/hand", json={"up": True}, headers=chair
            ) as response:
                assert response.status == 503


async def test_the_district_chair_answers_the_upper_roll_call(tmp_path: Path) -> None:
    upper, lower = pair(tmp_path)
    async with running(upper) as up:
        lower.uplink = {**(lower.uplink or {}), "url": up.signalling_url}
        async with running(lower) as app, aiohttp.ClientSession() as http:
            ack = app.web_url + "/api/uplink/rollcall_ack"
            chair = {"Authorization": f"Bearer {lower.token_for('tianhe')}"}
            street = {"Authorization": f"Bearer {lower.token_for('tianhe.zhuji')}"}
            await uplink_status(app, "up")
            async with http.post(ack, headers=street) as response:
                assert response.status == 403
            # not called: the upper level refuses the answer, the district says why
            async with http.post(ack, headers=chair) as response:
                refused = await response.json()
                assert response.status == 409 and refused["code"] == "conflict", refused
            city = await Client.connect(up.signalling_url, upper.token_for("gz"))
            try:
                await city.request({"type": "rollcall", "action": "start", "sites": ["gz.tianhe"]})
                status = await uplink_status(app, "up", rollcall_called=True)
                assert not status["rollcall_acked"]
                async with http.post(ack, headers=chair) as response:
                    assert response.status == 200, await response.text()
                await uplink_status(app, "up", rollcall_acked=True)
                assert "gz.tianhe" in up.conference.snapshot()["rollcall"]["acked"]
            finally:
                await city.close()


async def test_the_chair_console_speaks_upstairs(tmp_path: Path) -> None:
    from browser_support import FAKE_DEVICE_ARGS, chromium
    from playwright.async_api import expect

    upper, lower = pair(tmp_path)
    async with running(upper) as up:
        lower.uplink = {**(lower.uplink or {}), "url": up.signalling_url}
        async with (
            running(lower) as app,
            chromium(str(tmp_path / "profile"), FAKE_DEVICE_ARGS) as context,
        ):
            await uplink_status(app, "up")
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{app.web_url}/chair?token={lower.token_for('tianhe')}")
            panel = page.get_by_test_id("uplink")
            await expect(panel).to_be_visible(timeout=15_000)
            await expect(panel).to_have_attribute("data-state", "up", timeout=15_000)
            await expect(page.get_by_test_id("uplink-state")).to_contain_text("已连接")
            await expect(page.get_by_test_id("uplink-ack")).to_be_hidden()
            await page.get_by_test_id("uplink-hand").click()
            await wait_for(
                lambda: up.conference.snapshot()["hands"] == ["gz.tianhe"], 15, "hand upstairs"
            )
            await expect(page.get_by_test_id("uplink-hand")).to_contain_text("放下", timeout=15_000)
            city = await Client.connect(up.signalling_url, upper.token_for("gz"))
            try:
                await city.request({"type": "rollcall", "action": "start", "sites": ["gz.tianhe"]})
                ack = page.get_by_test_id("uplink-ack")
                await expect(ack).to_be_visible(timeout=15_000)
                await ack.click()
                await wait_for(
                    lambda: "gz.tianhe" in up.conference.snapshot()["rollcall"]["acked"],
                    15,
                    "the district answered the roll call",
                )
                await expect(ack).to_be_hidden(timeout=15_000)
            finally:
                await city.close()
            assert not errors, errors


class SizedViewer:
    """A chair at the upper level that records the size of each decoded ``main`` frame."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.sizes: list[tuple[int, int]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, VideoFrame)
                self.sizes.append((frame.width, frame.height))

    async def join(self, url: str, token: str) -> Client:
        client = await Client.connect(url, token)
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        reply = await client.request({"type": "offer", "sdp": self.pc.localDescription.sdp})
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        return client

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


async def test_publish_wall_sends_the_wall_output_up(tmp_path: Path) -> None:
    upper, lower = pair(tmp_path, publish="wall", output="wall")
    async with running(upper) as up:
        lower.uplink = {**(lower.uplink or {}), "url": up.signalling_url}
        async with running(lower) as app:
            await uplink_status(app, "up")
            street = await Terminal.join(lower, "tianhe.zhuji", STREET, app.signalling_url)
            # (the programme would be the district's chair, 320x240: the wall is sent instead)
            district = await Terminal.join(lower, "tianhe", DISTRICT_CHAIR, app.signalling_url)
            chair = SizedViewer()
            client = await chair.join(up.signalling_url, upper.token_for("gz"))
            try:
                await client.request({"type": "floor", "site": "gz.tianhe"})
                await wait_for(lambda: len(chair.sizes) > 10, 45, "the district's wall upstairs")
                assert assert_wall_size(app, chair.sizes[-1])
                status = await uplink_status(app, "up")
                assert status["publish"] == "wall"
            finally:
                await street.close()
                await district.close()
                await client.close()
                await chair.close()


def assert_wall_size(app: Huishang, size: tuple[int, int]) -> bool:
    walls = app.walls
    assert walls is not None
    compositor = walls.outputs["wall"].config.compositor
    return size == (compositor.width, compositor.height)


# -- three real servers -------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@dataclass
class LevelConfig:
    """One server's config folder: sites (id, name, role, level), tokens, an optional uplink."""

    name: str
    folder: Path
    web_port: int
    signalling_port: int
    sites: list[tuple[str, str, str, str]]
    uplink: dict[str, Any] | None = None  # url, token, site, and any other [uplink] keys
    tokens: dict[str, str] = field(default_factory=dict)
    extra: str = ""  # more of huishang.toml (a [tls] table)

    def token_for(self, site_id: str) -> str:
        return self.tokens.setdefault(site_id, f"{self.name}-{site_id}-token-0123456789")

    def write(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        entries = []
        for site_id, name, role, level in self.sites:
            entry = f'[[sites]]\nid = "{site_id}"\nname = "{name}"\nrole = "{role}"\n'
            entry += f'level = "{level}"\n'
            if level != "uplink":  # the upper level's programme here needs no token
                entry += f'token_hash = "{hash_token(self.token_for(site_id))}"\n'
            entries.append(entry)
        (self.folder / "sites.toml").write_text("\n".join(entries), encoding="utf-8")
        main = (
            f'sites = "sites.toml"\ndata_dir = "data"\n\n'
            f'[web]\nhost = "127.0.0.1"\nport = {self.web_port}\n\n'
            f'[signalling]\nhost = "127.0.0.1"\nport = {self.signalling_port}\n\n'
            '[ice]\nhost_addresses = ["127.0.0.1"]\n\n[limits]\nrejoin_grace_s = 15.0\n'
        ) + self.extra
        if self.uplink is not None:
            settings = {"retry_min_s": 0.5, "retry_max_s": 2.0, **self.uplink}
            (self.folder / "uplink-token.txt").write_text(settings.pop("token") + "\n")
            settings["token_file"] = "uplink-token.txt"
            main += "\n[uplink]\n" + "".join(
                f"{key} = {json.dumps(value)}\n" for key, value in settings.items()
            )
        path = self.folder / "huishang.toml"
        path.write_text(main, encoding="utf-8")
        return path

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def signalling(self) -> str:
        return f"ws://127.0.0.1:{self.signalling_port}/"


class ServerProcess:
    """``huishang serve --config FILE`` as a user runs it; output to files in its folder."""

    def __init__(self, level: LevelConfig) -> None:
        self.level = level
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        config = self.level.write()
        out = open(self.level.folder / f"stdout-{self.runs}.txt", "wb")  # noqa: SIM115
        err = open(self.level.folder / f"stderr-{self.runs}.txt", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "web.cli", "serve", "--config", str(config)],
            cwd=ROOT,
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        out.close()
        err.close()
        deadline = time.monotonic() + 60
        while "signalling " not in self.stdout():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.level.name} did not start:\n{self.stderr()[-3000:]}")
            time.sleep(0.1)

    def stdout(self) -> str:
        return (self.level.folder / f"stdout-{self.runs}.txt").read_text(errors="replace")

    def stderr(self) -> str:
        return (self.level.folder / f"stderr-{self.runs}.txt").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the server dies as in a crash or a power cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(15)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.level.web + path, timeout=10) as response:
            return json.loads(response.read())


@dataclass
class Cascade:
    province: ServerProcess
    city: ServerProcess
    district: ServerProcess


@pytest.fixture(scope="module")
def cascade(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cascade]:
    root = tmp_path_factory.mktemp("cascade")
    ports = free_ports(6)
    province = LevelConfig(
        "province",
        root / "province",
        ports[0],
        ports[1],
        [
            ("gd", "广东省应急指挥中心", "chair", "district"),
            ("gd.gz", "广州市", "uplink", "district"),
        ],
    )
    city = LevelConfig(
        "city",
        root / "city",
        ports[2],
        ports[3],
        [
            ("gz", "广州市应急指挥中心", "chair", "district"),
            ("gz.tianhe", "天河区", "uplink", "district"),
            ("gz.up", "广东省", "uplink", "uplink"),
        ],
    )
    city.uplink = {
        "url": province.signalling,
        "token": province.token_for("gd.gz"),
        "site": "gz.up",
    }
    district = LevelConfig(
        "district",
        root / "district",
        ports[4],
        ports[5],
        [
            ("tianhe", "天河区应急指挥中心", "chair", "district"),
            ("tianhe.zhuji", "珠吉街", "terminal", "street"),
            ("tianhe.up", "广州市应急指挥中心", "uplink", "uplink"),
        ],
    )
    district.uplink = {
        "url": city.signalling,
        "token": city.token_for("gz.tianhe"),
        "site": "tianhe.up",
    }
    servers = Cascade(ServerProcess(province), ServerProcess(city), ServerProcess(district))
    try:
        for server in (servers.province, servers.city, servers.district):
            server.start()
        yield servers
    finally:
        for server in (servers.district, servers.city, servers.province):
            server.stop()


class Terminal:
    """A terminal at one level: camera (marked frames) + microphone up, programme down."""

    def __init__(self, client: Client, tag: int) -> None:
        self.client = client
        self.tag = tag
        self.peer = LoopbackClient()
        self.peer.send(MarkedVideoTrack(tag, fps=15))

    @classmethod
    async def join(
        cls, level: LevelConfig, site: str, tag: int, url: str | None = None
    ) -> Terminal:
        url = url or level.signalling
        client = await Client.connect(url, level.token_for(site), timeout=20)
        terminal = cls(client, tag)
        pc = terminal.peer.pc
        await pc.setLocalDescription(await pc.createOffer())
        reply = await client.request({"type": "offer", "sdp": pc.localDescription.sdp}, 20)
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        await wait_for(lambda: pc.connectionState == "connected", 30, f"{site}'s media")
        return terminal

    def tags(self) -> list[int]:
        """Tags of the decoded ``main`` video frames, in order."""
        return [v >> 12 for received in self.peer.video.values() for v, _ in received.frames]

    def frames(self) -> int:
        return sum(len(received.frames) for received in self.peer.video.values())

    def audio_frames(self) -> int:
        return sum(self.peer.audio_frames.values())

    async def sees(self, tag: int, what: str, timeout: float = 45) -> None:
        """Wait until the newest decoded frames show *tag*."""
        await wait_for(lambda: self.tags()[-5:] == [tag] * 5, timeout, what)

    async def floor(self, site: str | None) -> None:
        """(the chair) Give the floor to *site*, retrying while it is not online yet."""
        deadline = time.monotonic() + 45
        while True:
            try:
                await self.client.request({"type": "floor", "site": site})
                return
            except ClientError as exc:
                if exc.code != "conflict" or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self.peer.close()
        await self.client.close()


def _tags(client: LoopbackClient) -> list[int]:
    return [tag for received in client.video.values() for tag in received.tags()]


async def wait_uplink(server: ServerProcess, state: str, connects: int = 1) -> dict[str, Any]:
    """Poll ``GET /api/uplink`` until the link is in *state* (and came up *connects* times)."""
    status: dict[str, Any] = {}

    def ready() -> bool:
        nonlocal status
        try:
            status = server.get("/api/uplink")
        except OSError:
            return False
        return bool(status["state"] == state and status["connects"] >= connects)

    deadline = time.monotonic() + 60
    while not await asyncio.to_thread(ready):
        if time.monotonic() > deadline:
            raise AssertionError(f"{server.level.name} uplink never {state}: {status}")
        await asyncio.sleep(0.2)
    return status


@pytest.fixture
async def terminals(cascade: Cascade, loopback_ice: None) -> AsyncIterator[dict[str, Terminal]]:
    await wait_uplink(cascade.city, "up")
    await wait_uplink(cascade.district, "up")
    joined: dict[str, Terminal] = {}
    try:
        for name, server, site, tag in (
            ("province", cascade.province, "gd", PROVINCE_CHAIR),
            ("city", cascade.city, "gz", CITY_CHAIR),
            ("district", cascade.district, "tianhe", DISTRICT_CHAIR),
            ("street", cascade.district, "tianhe.zhuji", STREET),
        ):
            joined[name] = await Terminal.join(server.level, site, tag)
        yield joined
    finally:
        for terminal in joined.values():
            await terminal.close()


async def test_the_province_reaches_a_street_and_a_street_reaches_the_province(
    cascade: Cascade, terminals: dict[str, Terminal]
) -> None:
    province, city, district, street = (
        terminals[k] for k in ("province", "city", "district", "street")
    )
    status = cascade.district.get("/api/uplink")
    assert status["upper_site"]["id"] == "gz.tianhe" and status["upper_site"]["role"] == "uplink"
    roster = {s["id"]: s for s in cascade.district.get("/api/status")["sites"]}
    assert roster["tianhe.up"]["online"]  # the upper level is present here as a site
    # Down: the city and the district give the floor to their uplinks; the street sees (and
    # hears) the province's chair, two hops away.
    await city.floor("gz.up")
    await district.floor("tianhe.up")
    await street.sees(PROVINCE_CHAIR, "the province's chair at the street")
    await district.sees(PROVINCE_CHAIR, "the province's chair at the district's chair")
    heard = street.audio_frames()
    await wait_for(lambda: street.audio_frames() > heard + 50, 30, "programme audio at the street")
    # Up: the province gives the floor to the city, the city to the district, the district
    # to the street; the province's chair sees the street's camera, two hops up.
    await province.floor("gd.gz")
    await city.floor("gz.tianhe")
    await district.floor("tianhe.zhuji")
    await province.sees(STREET, "the street's camera at the province")
    heard = province.audio_frames()
    await wait_for(lambda: province.audio_frames() > heard + 50, 30, "audio at the province")
    # the district's programme goes back to its chair: the province follows
    await district.floor(None)
    await province.sees(DISTRICT_CHAIR, "the district's chair at the province")
    # nobody upstairs watches the district any more: the city pauses the district's uplink
    await city.floor(None)
    await province.floor(None)
    deadline = time.monotonic() + 30
    while not cascade.district.get("/api/uplink")["paused"]["video"]:
        assert time.monotonic() < deadline, "the city never paused the district's uplink"
        await asyncio.sleep(0.2)
    # ... and the district obeys: nothing more goes up while paused
    sent = cascade.district.get("/api/uplink")["media"]["sent"]["video"]
    await asyncio.sleep(1.0)
    assert cascade.district.get("/api/uplink")["media"]["sent"]["video"] == sent


async def test_the_district_carries_on_while_the_city_restarts(
    cascade: Cascade, terminals: dict[str, Terminal]
) -> None:
    province, district, street = terminals["province"], terminals["district"], terminals["street"]
    await district.floor(None)
    await street.sees(DISTRICT_CHAIR, "the district's chair at the street")
    before = await wait_uplink(cascade.district, "up")
    connects = before["connects"]
    cascade.city.kill()
    await terminals["city"].close()
    down = await asyncio.to_thread(lambda: cascade.district.get("/api/uplink"))
    deadline = time.monotonic() + 30
    while down["state"] == "up":
        assert time.monotonic() < deadline, "the district never noticed the city was gone"
        await asyncio.sleep(0.1)
        down = await asyncio.to_thread(lambda: cascade.district.get("/api/uplink"))
    assert down["last_error"]
    roster = {s["id"]: s for s in cascade.district.get("/api/status")["sites"]}
    assert not roster["tianhe.up"]["online"]
    # the district's own conference goes on: the street keeps decoding its chair
    seen = street.frames()
    await wait_for(lambda: street.frames() > seen + 30, 30, "frames at the street, city down")
    assert set(street.tags()[seen:]) == {DISTRICT_CHAIR}
    # the city comes back on the same ports; the district links up again by itself
    cascade.city.start()
    status = await wait_uplink(cascade.district, "up", connects + 1)
    assert status["attempts"] > before["attempts"]
    await wait_uplink(cascade.city, "up")
    seen = street.frames()
    await wait_for(lambda: street.frames() > seen + 30, 30, "frames at the street after")
    assert set(street.tags()) == {DISTRICT_CHAIR}  # never anything else, never a gap of sources
    # and media crosses the new links: the city (a new chair session) and the province see
    # the district's programme again
    city = await Terminal.join(cascade.city.level, "gz", CITY_CHAIR)
    try:
        await city.floor("gz.tianhe")
        await city.sees(DISTRICT_CHAIR, "the district's chair at the restarted city")
        await province.floor("gd.gz")
        await province.sees(DISTRICT_CHAIR, "the district's chair at the province, again")
    finally:
        await city.close()


async def test_the_uplink_relinks_when_its_media_dies_under_a_live_socket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The upper level's end of the peer connection goes away while the websocket stays up:
    the district notices ("media closed/failed"), drops the link and links again, media and
    all, instead of sitting on a socket whose media is dead."""
    upper, lower = pair(tmp_path)
    async with running(upper) as up:
        lower.uplink = {**(lower.uplink or {}), "url": up.signalling_url}
        async with running(lower) as app:
            await uplink_status(app, "up", connects=1)
            assert up.media is not None
            peer = up.media.peer_of("gz.tianhe")
            assert peer is not None
            caplog.set_level(logging.WARNING, logger="signalling.uplink")
            await peer.close()  # the media only: the district's socket is still open
            await uplink_status(app, "up", connects=2)
            assert any("dropped (media closed)" in r.getMessage() for r in caplog.records)
            assert up.media.peer_of("gz.tianhe") is not None  # a new peer upstairs
            assert up.conference.online().get(SiteId("gz.tianhe"))
