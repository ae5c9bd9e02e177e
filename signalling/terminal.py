"""The Python terminal's media: an aiortc peer that offers the way PROTOCOL.md ("Media") says,
through a :class:`signalling.client.Client` (used by ``huishang join``, tests and benchmarks)::

    client = await Client.connect(url, token)
    terminal = MediaTerminal(client, video=TestPattern("珠吉街"), audio=AudioStreamTrack())
    # (TestPattern and the other sources: signalling.source)
    await terminal.start()            # offer, answer, connected
    terminal.main_video_fps()         # frames of `main` decoded in the last second
    terminal.labels["main"]           # what `main` shows, from `slots` events
    await terminal.close()

The offer (RFC 8829 JSEP) is audio then video, each sendrecv when there is a track to send
(recvonly otherwise), then ``extra_videos`` recvonly video sections (slots ``extra1`` ...).
aiortc gathers all its candidates before it hands out the offer, so no trickling is needed.

``pause`` events are obeyed without renegotiation: each sent track goes through a
:class:`PausableTrack`, whose ``recv`` keeps draining the source (a camera or RTSP source must
not back up) but hands the encoder nothing while paused, so nothing is sent. The first frame
after a pause is encoded as a keyframe when the relay asked for one (PLI) meanwhile.

A ``pause`` event's ``video_limit`` (docs/protocol.md: the server needs at most this height and
frame rate, e.g. while the site shows only in a wall tile) is obeyed the same way: the video
track scales its frames down to the height (keeping the aspect, even sizes) and drops frames
above the rate before the encoder sees them; a ``pause`` without it lifts the limit. A bad
limit (not a positive number) is ignored.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.frame import Frame
from av.packet import Packet
from av.video.frame import VideoFrame

from .client import Client, Event

__all__ = ["MediaTerminal", "PausableTrack", "TerminalConfig"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TerminalConfig:
    """How the terminal offers: extra receive slots, connect timeout, fps window."""

    extra_videos: int = 0
    connect_timeout_s: float = 20.0
    fps_window_s: float = 1.0


class PausableTrack(MediaStreamTrack):
    """Passes ``source`` through; while :attr:`paused`, reads and drops its frames, so the
    sender gets (and sends) nothing and the source never backs up. Video frames are scaled
    down to :attr:`max_height` and thinned to :attr:`max_fps` when those are set."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.paused = False
        self.dropped = 0
        self.max_height: int | None = None
        self.max_fps: float | None = None
        self._due: float | None = None  # media time the next frame may be passed on

    async def recv(self) -> Frame | Packet[Any]:
        while True:
            frame = await self.source.recv()
            if self.paused:
                self.dropped += 1
                continue
            if not isinstance(frame, VideoFrame):
                return frame
            if self._thinned(frame):
                self.dropped += 1
                continue
            return self._scaled(frame)

    def _thinned(self, frame: VideoFrame) -> bool:
        """Whether the frame rate limit drops this frame (by its media time)."""
        if self.max_fps is None or frame.pts is None or frame.time_base is None:
            self._due = None
            return False
        t = float(frame.pts * frame.time_base)
        interval = 1 / self.max_fps
        if self._due is not None and self._due - 2 * interval < t < self._due - interval / 4:
            return True
        self._due = max(t, self._due if self._due is not None else t) + interval
        if self._due - t > 2 * interval:  # the clock jumped back: follow it
            self._due = t + interval
        return False

    def _scaled(self, frame: VideoFrame) -> VideoFrame:
        limit = self.max_height
        if limit is None or frame.height <= limit:
            return frame
        height = limit - limit % 2
        width = max(2, round(frame.width * height / frame.height / 2) * 2)
        scaled = frame.reformat(width=width, height=height)
        scaled.pts, scaled.time_base = frame.pts, frame.time_base
        return scaled

    def stop(self) -> None:
        super().stop()
        self.source.stop()


class _Received:
    """Decoded frames of one receive slot: a count and the recent arrival times."""

    def __init__(self) -> None:
        self.count = 0
        self.times: collections.deque[float] = collections.deque(maxlen=512)

    def add(self, now: float) -> None:
        self.count += 1
        self.times.append(now)

    def rate(self, window: float, now: float) -> float:
        return sum(1 for t in self.times if now - t <= window) / window


class MediaTerminal:
    """One terminal's ``RTCPeerConnection`` to the server, negotiated over ``client``.

    :meth:`start` hooks the client's ``on_event`` (keeping any hook already there and calling
    it after its own handling); :meth:`close` puts the previous hook back.
    """

    def __init__(
        self,
        client: Client,
        *,
        video: MediaStreamTrack | None = None,
        audio: MediaStreamTrack | None = None,
        config: TerminalConfig | None = None,
    ) -> None:
        self.client = client
        self.config = config or TerminalConfig()
        self.video = PausableTrack(video) if video is not None else None
        self.audio = PausableTrack(audio) if audio is not None else None
        servers = [_ice_server(s) for s in client.welcome.get("ice_servers", [])]
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.slots: dict[str, str] = {}  # mid → slot name, from the answer
        self.labels: dict[str, str] = {}  # slot name → label, from `slots` events
        self.sources: dict[str, str | None] = {}  # slot name → source id
        self.paused = {"video": False, "audio": False}
        self.video_limit: dict[str, float] = {}  # the server's `video_limit`, as obeyed
        self._received: dict[tuple[str, str], _Received] = {}  # (slot, kind) → frames
        self._tasks: list[asyncio.Task[None]] = []
        self._previous_hook: Callable[[Event], None] | None = None
        self._hooked = False
        self.pc.on("track", self._on_track)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> dict[str, str]:
        """Offer, apply the answer, wait until connected; returns ``{mid: slot name}``."""
        self._previous_hook, self.client.on_event = self.client.on_event, self._on_event
        self._hooked = True
        for kind, track in (("audio", self.audio), ("video", self.video)):
            if track is not None:
                self.pc.addTransceiver(track, direction="sendrecv")
            else:
                self.pc.addTransceiver(kind, direction="recvonly")
        for _ in range(self.config.extra_videos):
            self.pc.addTransceiver("video", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        reply = await self.client.request({"type": "offer", "sdp": self.pc.localDescription.sdp})
        self.slots = {str(k): str(v) for k, v in reply.get("slots", {}).items()}
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        deadline = time.monotonic() + self.config.connect_timeout_s
        while self.pc.connectionState != "connected":
            if self.pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                raise ConnectionError(f"media did not connect ({self.pc.connectionState})")
            await asyncio.sleep(0.05)
        return dict(self.slots)

    async def close(self) -> None:
        """Stop the tracks and close the peer connection (idempotent)."""
        if self._hooked and self.client.on_event == self._on_event:
            self.client.on_event = self._previous_hook
        self._hooked = False
        for task in self._tasks:
            task.cancel()
        for track in (self.video, self.audio):
            if track is not None:
                track.stop()
        await self.pc.close()

    # -- what arrives ---------------------------------------------------------------------

    def frames(self, slot: str = "main", kind: str = "video") -> int:
        """Frames (video) or audio frames decoded so far on ``slot``."""
        received = self._received.get((slot, kind))
        return received.count if received is not None else 0

    def fps(self, slot: str = "main", kind: str = "video") -> float:
        """Frames per second decoded on ``slot`` over the last ``fps_window_s``."""
        received = self._received.get((slot, kind))
        if received is None:
            return 0.0
        return received.rate(self.config.fps_window_s, time.monotonic())

    def main_video_fps(self) -> float:
        return self.fps("main", "video")

    def main_audio_fps(self) -> float:
        return self.fps("main", "audio")

    def status(self) -> dict[str, Any]:
        """A one-line summary (what ``huishang join`` prints once a second)."""
        return {
            "state": self.pc.connectionState,
            "main_fps": round(self.main_video_fps(), 1),
            "main_audio_fps": round(self.main_audio_fps(), 1),
            "main": self.labels.get("main", ""),
            "extra_fps": {
                name: round(self.fps(name), 1)
                for name in sorted(set(self.slots.values()))
                if name != "main"
            },
            "paused": dict(self.paused),
            "video_limit": dict(self.video_limit),
        }

    # -- internals ------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        self.handle(event)
        if self._previous_hook is not None:
            self._previous_hook(event)

    def handle(self, event: Mapping[str, Any]) -> None:
        """Apply a server event that concerns media (``slots``, ``pause``)."""
        if event.get("type") == "slots":
            for name, assign in (event.get("assign") or {}).items():
                if isinstance(assign, Mapping):
                    self.labels[name] = str(assign.get("label") or "")
                    self.sources[name] = assign.get("source")
        elif event.get("type") == "pause":
            for kind, track in (("video", self.video), ("audio", self.audio)):
                paused = bool(event.get(kind))
                self.paused[kind] = paused
                if track is not None:
                    track.paused = paused
            self.video_limit = _usable_limit(event.get("video_limit"))
            if self.video is not None:
                height = self.video_limit.get("height")
                self.video.max_height = int(height) if height is not None else None
                self.video.max_fps = self.video_limit.get("fps")

    def _on_track(self, track: MediaStreamTrack) -> None:
        transceiver = next(
            (t for t in self.pc.getTransceivers() if t.receiver.track is track), None
        )
        mid = transceiver.mid if transceiver is not None else None
        slot = self.slots.get(mid or "", f"mid:{mid}")
        received = self._received.setdefault((slot, track.kind), _Received())
        self._tasks.append(asyncio.ensure_future(self._consume(track, received)))

    async def _consume(self, track: MediaStreamTrack, received: _Received) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                received.add(time.monotonic())


def _usable_limit(raw: object) -> dict[str, float]:
    """The fields of a ``pause``'s ``video_limit`` a client can obey (docs/protocol.md):
    finite numbers, a height of at least 2 lines, at least 1 frame a second."""
    if not isinstance(raw, Mapping):
        return {}
    usable: dict[str, float] = {}
    for key, least in (("height", 2), ("fps", 1)):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value) and value >= least:
            usable[key] = value
    return usable


def _ice_server(server: Mapping[str, Any]) -> RTCIceServer:
    urls = server.get("urls", [])
    return RTCIceServer(
        urls=urls if isinstance(urls, str) else list(urls),
        username=server.get("username"),
        credential=server.get("credential"),
    )
