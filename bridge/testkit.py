"""Loopback clients and marked video for the bridge's tests and benchmarks (not product code).

:class:`MarkedVideoTrack` paints a 16-bit value (source tag and frame index) into the luma
of each frame as 16 black/white blocks, which survive VP8 at low bitrates; :func:`read_mark`
reads it back after decoding. :class:`LoopbackClient` is a plain aiortc peer that offers the
way PROTOCOL.md's clients do, against a :class:`~bridge.peer.Peer` in the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from av import VideoFrame

from .peer import Answer, Peer
from .publication import RelayConfig
from .relay import Relay
from .rtp import StreamRewriter
from .slot import Slot

__all__ = [
    "Bridge",
    "LoopbackClient",
    "MarkedVideoTrack",
    "ReceivedVideo",
    "RecordingPort",
    "mark_frame",
    "read_mark",
    "record_slot",
    "wait_for",
]

_BITS = 16
_BLOCK_TOP = 0.35
_BLOCK_BOTTOM = 0.65


def mark_frame(value: int, width: int = 320, height: int = 240) -> VideoFrame:
    """An I420 frame whose luma shows ``value`` as 16 blocks (1 = white), MSB first."""
    y = np.full((height, width), 64, dtype=np.uint8)
    block = width // _BITS
    top, bottom = int(height * _BLOCK_TOP), int(height * _BLOCK_BOTTOM)
    for bit in range(_BITS):
        if (value >> (_BITS - 1 - bit)) & 1:
            y[top:bottom, bit * block : (bit + 1) * block] = 235
        else:
            y[top:bottom, bit * block : (bit + 1) * block] = 16
    chroma = np.full((height // 2, width), 128, dtype=np.uint8)
    return VideoFrame.from_ndarray(np.vstack([y, chroma]), format="yuv420p")


def read_mark(frame: VideoFrame) -> int:
    """The value :func:`mark_frame` painted, read from a decoded frame."""
    plane = frame.planes[0]
    y = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(frame.height, plane.line_size)
    width = frame.width
    block = width // _BITS
    top, bottom = int(frame.height * _BLOCK_TOP), int(frame.height * _BLOCK_BOTTOM)
    value = 0
    for bit in range(_BITS):
        x0 = bit * block + block // 4
        x1 = (bit + 1) * block - block // 4
        area = y[top + 4 : bottom - 4, x0:x1]
        value = (value << 1) | int(area.mean() > 128)
    return value


class MarkedVideoTrack(MediaStreamTrack):
    """Synthetic 30 fps video whose frame ``i`` shows ``(tag << 12) | (i % 4096)``."""

    kind = "video"

    def __init__(self, tag: int, width: int = 320, height: int = 240, fps: int = 30) -> None:
        super().__init__()
        self.tag = tag & 0xF
        self.width = width
        self.height = height
        self.fps = fps
        self.index = 0
        self._start: float | None = None
        self.sent_at: dict[int, float] = {}  # mark value → wall time handed to the encoder

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        due = self._start + self.index / self.fps
        wait = due - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        value = (self.tag << 12) | (self.index % 4096)
        frame = mark_frame(value, self.width, self.height)
        frame.pts = self.index * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self.sent_at[value] = time.time()
        if len(self.sent_at) > 4096:
            self.sent_at.pop(next(iter(self.sent_at)))
        self.index += 1
        return frame


@dataclass
class ReceivedVideo:
    """What a client decoded on one track: (mark value, wall time) per frame."""

    frames: list[tuple[int, float]] = field(default_factory=list)

    def values(self) -> list[int]:
        return [v for v, _ in self.frames]

    def tags(self) -> list[int]:
        return [v >> 12 for v, _ in self.frames]


class LoopbackClient:
    """An aiortc client peer: sends camera/microphone and/or receives slots."""

    def __init__(self) -> None:
        # aiortc 1.16 with the default "balanced" policy leaves a second transceiver of a
        # kind on a transport it discards when the answer BUNDLEs: use max-bundle
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.video: dict[str, ReceivedVideo] = {}  # mid → decoded frames
        self.audio_frames: dict[str, int] = {}  # mid → decoded audio frames
        self.answer: Answer | None = None
        self.read = True
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        transceiver = next(
            (t for t in self.pc.getTransceivers() if t.receiver.track is track), None
        )
        mid = transceiver.mid if transceiver is not None and transceiver.mid else "?"
        self._tasks.append(asyncio.ensure_future(self._consume(mid, track)))

    async def _consume(self, mid: str, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not self.read:
                    continue
                if track.kind == "video":
                    assert isinstance(frame, VideoFrame)
                    received = self.video.setdefault(mid, ReceivedVideo())
                    received.frames.append((read_mark(frame), time.time()))
                else:
                    self.audio_frames[mid] = self.audio_frames.get(mid, 0) + 1

    def send(self, video: MediaStreamTrack | None, audio: bool = True) -> None:
        """Offer sendrecv audio then sendrecv video (PROTOCOL.md order)."""
        if audio:
            self.pc.addTrack(AudioStreamTrack())
        if video is not None:
            self.pc.addTrack(video)

    def receive(self, audio: bool = True, videos: int = 1) -> list[RTCRtpTransceiver]:
        """Offer recvonly transceivers: audio (optional), then ``videos`` video ones."""
        out = []
        if audio:
            out.append(self.pc.addTransceiver("audio", direction="recvonly"))
        for _ in range(videos):
            out.append(self.pc.addTransceiver("video", direction="recvonly"))
        return out

    async def connect(self, peer: Peer, timeout: float = 20.0) -> Answer:
        """Offer to ``peer``, apply its answer and wait until connected."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await peer.answer(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected" or peer.pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise TimeoutError("loopback peer did not connect")
            await asyncio.sleep(0.02)
        self.answer = answer
        return answer

    def mid_of(self, name: str, kind: str) -> str:
        """The mid the bridge mapped to slot ``name`` of ``kind``."""
        assert self.answer is not None
        for t in self.pc.getTransceivers():
            if t.kind == kind and t.mid is not None and self.answer.slots.get(t.mid) == name:
                return t.mid
        raise KeyError(name)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()


async def wait_for(
    condition: Callable[[], bool], timeout: float = 15.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Bridge:
    """A relay plus the bridge-side peers and the client peers of one test."""

    def __init__(self) -> None:
        self.relay = Relay(RelayConfig())
        self.peers: list[Peer] = []
        self.clients: list[LoopbackClient] = []

    async def join(self, client: LoopbackClient) -> Peer:
        peer = Peer(f"p{len(self.peers)}", self.relay)
        self.peers.append(peer)
        self.clients.append(client)
        await client.connect(peer)
        return peer

    async def publisher(self, tag: int) -> tuple[LoopbackClient, Peer, MarkedVideoTrack]:
        client = LoopbackClient()
        track = MarkedVideoTrack(tag)
        client.send(track)
        peer = await self.join(client)
        return client, peer, track

    async def subscriber(self, videos: int = 1) -> tuple[LoopbackClient, Peer]:
        client = LoopbackClient()
        client.receive(videos=videos)
        peer = await self.join(client)
        return client, peer

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for peer in self.peers:
            await peer.close()
        self.relay.close()


class RecordingPort:
    """A :class:`~bridge.slot.DownstreamPort` that keeps what its slot sends (the rewritten
    RTP bytes), standing in for the subscriber side of aiortc."""

    ssrc = 0x5107
    ready = True

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, sequence_number: int, data: bytes, payload_size: int) -> None:
        self.sent.append(data)

    def close(self) -> None:
        pass


def record_slot(slot: Slot, *, initial_sequence: int = 1) -> RecordingPort:
    """Connect *slot* to a new :class:`RecordingPort` through a plain rewriter (video: VP8
    as payload type 100; audio: Opus as 111; no header extensions) and return the port."""
    port = RecordingPort()
    video = slot.kind == "video"
    rewriter = StreamRewriter(
        ssrc=port.ssrc,
        payload_type=100 if video else 111,
        clock_rate=90000 if video else 48000,
        vp8=video,
        extension_ids={},
        mid=None,
        initial_sequence=initial_sequence,
        initial_timestamp=0,
    )
    slot.connect(port, rewriter)
    return port
