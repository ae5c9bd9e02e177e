"""Recording (issue 5, part 5): the recorder on real publications, real files, real PyAV.

- Depacketising (RFC 7741, RFC 7587) on real libvpx / libopus output: byte-exact frames,
  keyframes, gaps, truncated descriptors, late packets.
- :class:`bridge.recorder.Recorder` on relay publications fed by a synthetic real-time source
  (libvpx + libopus): the file decodes with both tracks and the expected duration; a stream
  that starts without a keyframe asks for one; bad packets do not stop it.
- A recorder process killed with SIGKILL mid-way leaves a file PyAV decodes (this file run as
  a script is that process: ``python tests/test_recording.py OUT.webm``).
- Through the real server (``Huishang.open`` on free ports, the demo config): the chair's
  ``record`` request, terminals publishing over aiortc, the index row, the HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import av
import numpy as np
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from bridge.depacketizer import (
    OpusDepacketizer,
    ReorderBuffer,
    Timeline,
    Vp8Depacketizer,
    vp8_frame_size,
)
from bridge.encoder import EncoderConfig, Vp8Encoder, packetize_vp8
from bridge.publication import Publication
from bridge.recorder import Recorder, RecorderConfig
from bridge.relay import Relay
from bridge.rtp import RtpPacket
from bridge.testkit import LoopbackClient, MarkedVideoTrack, mark_frame, read_mark, wait_for
from signalling.client import Client
from signalling.model import SiteId
from web.app import Huishang
from web.config import HuishangConfig
from web.recording import PROGRAMME, RecordingConfig, RecordingGateway
from web.store import RecordingEntry, Store

FPS = 30
AUDIO_FRAME = 960  # 20 ms at 48 kHz


# -- a synthetic real-time source: marked VP8 frames and an Opus tone -------------------------


def opus_encoder() -> av.AudioCodecContext:
    codec = av.CodecContext.create("libopus", "w")
    assert isinstance(codec, av.AudioCodecContext)
    codec.sample_rate = 48000
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = 32000
    return codec


def tone(index: int, frequency: float = 440.0) -> AudioFrame:
    n = index * AUDIO_FRAME + np.arange(AUDIO_FRAME)
    wave = (0.3 * 32767 * np.sin(2 * np.pi * frequency * n / 48000)).astype(np.int16)
    frame = AudioFrame.from_ndarray(wave.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 48000
    frame.pts = index * AUDIO_FRAME
    frame.time_base = fractions.Fraction(1, 48000)
    return frame


@dataclass
class Source:
    """Publishes marked VP8 video (frame i shows i) and a tone into two publications, in real
    time, like a publisher's receiver tap would. Answers keyframe requests (PLI)."""

    video: Publication
    audio: Publication
    width: int = 320
    height: int = 240
    skip_first: int = 0  # frames encoded but never sent (a stream joined without a keyframe)
    encoder: Vp8Encoder = field(default_factory=lambda: Vp8Encoder(EncoderConfig(), FPS))
    keyframe_asked: int = 0
    frames_sent: int = 0
    audio_sent: int = 0
    _force: bool = False
    _seq: int = 1000
    _aseq: int = 50000

    def __post_init__(self) -> None:
        self.video.bind(self)
        self._opus = opus_encoder()

    # UpstreamPort
    def request_keyframe(self) -> None:
        self.keyframe_asked += 1
        self._force = True

    def send_remb(self, bitrate: int) -> None:
        return None

    def video_packets(self, index: int) -> list[RtpPacket]:
        frame = mark_frame(index, self.width, self.height)
        force, self._force = self._force, False
        out = []
        for data, _ in self.encoder.encode(frame, keyframe=force):
            payloads = packetize_vp8(data, index, 400)  # small payloads: several per frame
            for i, payload in enumerate(payloads):
                out.append(
                    RtpPacket(
                        96,
                        self._seq & 0xFFFF,
                        (index * 3000) & 0xFFFFFFFF,
                        1234,
                        payload,
                        marker=i == len(payloads) - 1,
                    )
                )
                self._seq += 1
        return out

    def audio_packets(self, index: int) -> list[RtpPacket]:
        out = []
        for packet in self._opus.encode(tone(index)):
            out.append(RtpPacket(111, self._aseq & 0xFFFF, index * AUDIO_FRAME, 99, bytes(packet)))
            self._aseq += 1
        return out

    async def run(self, seconds: float) -> None:
        start = time.monotonic()
        video_index = audio_index = 0
        while True:
            now = time.monotonic() - start
            if now >= seconds:
                return
            while audio_index * 0.02 <= now:
                for packet in self.audio_packets(audio_index):
                    await self.audio.on_rtp(packet, time.time())
                    self.audio_sent += 1
                audio_index += 1
            if video_index / FPS <= now:
                packets = self.video_packets(video_index)
                if video_index >= self.skip_first:
                    for packet in packets:
                        await self.video.on_rtp(packet, time.time())
                    self.frames_sent += 1
                video_index += 1
            await asyncio.sleep(0.005)


@dataclass
class Decoded:
    video_frames: int
    audio_frames: int
    video_end: float
    audio_end: float
    marks: list[int]
    size: tuple[int, int] | None
    audio_rms: float

    @property
    def duration(self) -> float:
        return max(self.video_end, self.audio_end)


def decode(path: Path) -> Decoded:
    """Every frame of both tracks, decoded with PyAV (what a player would show)."""
    marks: list[int] = []
    size = None
    video_end = audio_end = 0.0
    with av.open(str(path)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        for frame in container.decode(video=0):
            assert isinstance(frame, VideoFrame)
            marks.append(read_mark(frame) if frame.width == 320 else -1)
            size = (frame.width, frame.height)
            video_end = max(video_end, float(frame.time or 0))
    squares = count = 0.0
    audio_frames = 0
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            assert isinstance(frame, AudioFrame)
            audio_frames += 1
            audio_end = max(audio_end, float(frame.time or 0) + frame.samples / frame.sample_rate)
            samples = frame.to_ndarray().astype(np.float64)
            if frame.format.name.startswith("flt"):
                samples *= 32767
            squares += float((samples**2).sum())
            count += samples.size
    rms = (squares / count) ** 0.5 if count else 0.0
    return Decoded(len(marks), audio_frames, video_end, audio_end, marks, size, rms)


# -- depacketising ------------------------------------------------------------------------


def encoded_frames(count: int, keyframes: tuple[int, ...] = (0,)) -> list[tuple[bytes, bool]]:
    encoder = Vp8Encoder(EncoderConfig(), FPS)
    out = []
    for i in range(count):
        for data, key in encoder.encode(mark_frame(i), keyframe=i in keyframes):
            out.append((data, key))
    return out


def rtp(frames: list[tuple[bytes, bool]], max_payload: int = 40) -> list[RtpPacket]:
    packets = []
    seq = 65530  # wraps within the test
    for i, (data, _) in enumerate(frames):
        payloads = packetize_vp8(data, i, max_payload)
        for j, payload in enumerate(payloads):
            packets.append(
                RtpPacket(96, seq & 0xFFFF, i * 3000, 1, payload, j == len(payloads) - 1)
            )
            seq += 1
    return packets


def test_vp8_depacketizer_rebuilds_frames_byte_exact() -> None:
    frames = encoded_frames(10, keyframes=(0, 6))
    depacketizer = Vp8Depacketizer()
    out = [f for p in rtp(frames) for f in depacketizer.push(p)]
    assert [f.data for f in out] == [d for d, _ in frames]
    assert [f.keyframe for f in out] == [k for _, k in frames]
    assert out[0].keyframe and out[6].keyframe and not out[1].keyframe
    assert [f.timestamp for f in out] == [i * 3000 for i in range(10)]
    assert vp8_frame_size(out[0].data) == (320, 240)
    assert vp8_frame_size(out[1].data) is None
    assert depacketizer.gaps == depacketizer.dropped == depacketizer.malformed == 0


def test_vp8_depacketizer_gap_drops_until_keyframe() -> None:
    frames = encoded_frames(10, keyframes=(0, 6))
    packets = rtp(frames)
    frame_of = [p.timestamp // 3000 for p in packets]
    lost = next(i for i, f in enumerate(frame_of) if f == 2 and not packets[i].marker)
    depacketizer = Vp8Depacketizer()
    out = [f for i, p in enumerate(packets) if i != lost for f in depacketizer.push(p)]
    # frames 0 and 1 arrive; 2 lost a packet; 3..5 depend on it; 6 is a keyframe
    assert [f.timestamp // 3000 for f in out] == [0, 1, 6, 7, 8, 9]
    assert depacketizer.gaps == 1 and depacketizer.dropped == 4
    # a packet from before (late, duplicate) changes nothing
    assert depacketizer.push(packets[0]) == [] and depacketizer.late == 1


def test_vp8_depacketizer_waits_for_first_keyframe_and_survives_bad_packets() -> None:
    frames = encoded_frames(8, keyframes=(0, 5))
    packets = rtp(frames)
    depacketizer = Vp8Depacketizer()
    start = next(i for i, p in enumerate(packets) if p.timestamp == 2 * 3000)
    out = []
    for i, packet in enumerate(packets[start:]):
        if i == 3:  # a truncated descriptor: X set, then nothing; and an empty payload
            bad = RtpPacket(96, packet.sequence_number, packet.timestamp, 1, b"\x80")
            assert depacketizer.push(bad) == []
            continue
        out.extend(depacketizer.push(packet))
    assert depacketizer.malformed == 1
    assert [f.timestamp // 3000 for f in out] == [5, 6, 7]  # nothing before the keyframe


def test_vp8_depacketizer_without_marker_bits() -> None:
    frames = encoded_frames(4)
    packets = [
        RtpPacket(96, p.sequence_number, p.timestamp, 1, p.payload, False) for p in rtp(frames)
    ]
    depacketizer = Vp8Depacketizer()
    out = [f for p in packets for f in depacketizer.push(p)]
    assert [f.data for f in out] == [d for d, _ in frames[:3]]  # the last one never ends


def test_opus_depacketizer() -> None:
    depacketizer = OpusDepacketizer()
    assert depacketizer.push(RtpPacket(111, 7, 0, 1, b"\x78\x01")) != []
    assert depacketizer.push(RtpPacket(111, 9, 1920, 1, b"\x78\x02"))[0].data == b"\x78\x02"
    assert depacketizer.push(RtpPacket(111, 8, 960, 1, b"\x78\x03")) == []  # late
    assert depacketizer.push(RtpPacket(111, 10, 2880, 1, b"")) == []
    assert (depacketizer.gaps, depacketizer.late, depacketizer.malformed) == (1, 1, 1)


def test_reorder_buffer_waits_for_a_retransmission() -> None:
    def packet(seq: int) -> RtpPacket:
        return RtpPacket(96, seq & 0xFFFF, 0, 1, bytes([seq & 0xFF]))

    def seqs(packets: list[RtpPacket]) -> list[int]:
        return [p.sequence_number for p in packets]

    buffer = ReorderBuffer(window=4, max_wait=0.3)
    assert seqs(buffer.push(packet(65534), 0.0)) == [65534]
    assert buffer.push(packet(0), 0.01) == []  # 65535 missing: wait (across the wrap)
    assert buffer.push(packet(1), 0.02) == []
    assert seqs(buffer.push(packet(65535), 0.1)) == [65535, 0, 1]  # it came: all in order
    assert buffer.push(packet(0), 0.11) == [] and buffer.late == 1  # a duplicate
    # a packet that never comes: given up once the first held one waited max_wait
    assert buffer.push(packet(3), 0.2) == []
    assert buffer.push(packet(4), 0.4) == []
    assert seqs(buffer.push(packet(5), 0.5)) == [3, 4, 5]
    assert buffer.skipped == 1
    assert buffer.push(packet(2), 0.6) == [] and buffer.late == 2  # too late now
    # more than the window held: given up at once
    for seq in range(7, 11):
        assert buffer.push(packet(seq), 0.61) == []
    assert seqs(buffer.push(packet(11), 0.62)) == [7, 8, 9, 10, 11]
    # the end of the stream: what waits comes out in order
    assert buffer.push(packet(14), 0.7) == [] and buffer.push(packet(13), 0.7) == []
    assert seqs(buffer.flush()) == [13, 14] and len(buffer) == 0


def test_timeline_unwraps_and_stays_monotonic() -> None:
    timeline = Timeline(90000, max_drift_ms=5000)
    start = 0xFFFFFFFF - 3000
    assert timeline.pts(start, 100.0) == 100
    assert timeline.pts((start + 3000) & 0xFFFFFFFF, 133.0) == 133
    assert timeline.pts((start + 6000) & 0xFFFFFFFF, 166.0) == 167  # across the 32-bit wrap
    assert timeline.pts((start + 6000) & 0xFFFFFFFF, 170.0) == 168  # same timestamp: +1 ms
    # a jump of an hour re-anchors on the arrival clock
    assert timeline.pts((start + 6000 + 90000 * 3600) & 0xFFFFFFFF, 200.0) == 200
    assert timeline.reanchored == 1


# -- the recorder on relay publications ------------------------------------------------------


async def record(
    tmp_path: Path, seconds: float, *, skip_first: int = 0, config: RecorderConfig | None = None
) -> tuple[Recorder, Source, Path]:
    relay = Relay()
    video = relay.create_publication("cam/video", "video")
    audio = relay.create_publication("cam/audio", "audio")
    source = Source(video, audio, skip_first=skip_first)
    path = tmp_path / "recordings" / "test.webm"
    recorder = Recorder(path, relay, config=config)
    relay.route(recorder.video_slot, video)
    relay.route(recorder.audio_slot, audio)
    recorder.start()
    await source.run(seconds)
    return recorder, source, path


async def test_recorder_writes_both_tracks(tmp_path: Path) -> None:
    recorder, source, path = await record(tmp_path, 2.0)
    result = await recorder.stop()
    assert result == await recorder.stop()  # idempotent
    assert result.path == path and result.size == path.stat().st_size > 0
    assert result.video_size == (320, 240)
    decoded = decode(path)
    assert decoded.size == (320, 240)
    assert decoded.video_frames == result.video_frames == recorder.stats.muxed - result.audio_frames
    assert decoded.video_frames >= source.frames_sent - 3  # the slot waits for the first keyframe
    # the picture is the source's own: frame marks count up one by one
    assert decoded.marks == list(range(decoded.marks[0], decoded.marks[0] + len(decoded.marks)))
    assert decoded.audio_frames >= result.audio_frames - 1 > 0
    assert decoded.audio_rms > 1000  # the tone, not silence
    assert abs(decoded.duration - 2.0) < 0.5
    assert abs(result.duration_s - decoded.duration) < 0.1
    assert recorder.stats.errors == recorder.stats.queue_dropped == 0


async def test_recorder_asks_for_a_keyframe_when_the_stream_has_none(tmp_path: Path) -> None:
    recorder, source, path = await record(tmp_path, 1.5, skip_first=5)
    result = await recorder.stop()
    assert source.keyframe_asked >= 1
    decoded = decode(path)
    assert decoded.video_frames > 10 and decoded.marks[0] >= 5
    assert decoded.marks == list(range(decoded.marks[0], decoded.marks[0] + len(decoded.marks)))
    assert result.video_frames == decoded.video_frames


async def test_recorder_survives_bad_packets_and_gaps(tmp_path: Path) -> None:
    relay = Relay()
    video = relay.create_publication("cam/video", "video")
    audio = relay.create_publication("cam/audio", "audio")
    source = Source(video, audio)
    path = tmp_path / "bad.webm"
    recorder = Recorder(path, relay)
    relay.route(recorder.video_slot, video)
    relay.route(recorder.audio_slot, audio)
    recorder.start()
    held: list[RtpPacket] = []
    for index in range(60):
        packets = source.video_packets(index)
        if index == 8:  # frame 8 comes late, after frame 10 (a retransmission): it waits
            held = packets
            packets = []
        if index == 11:
            packets = held + packets
        if index == 12:
            packets = packets[1:]  # a gap: frame 12 loses its first packet for good
        if index == 35:  # frame 35: truncated descriptors (the relay forwards them as is)
            packets = [
                RtpPacket(96, p.sequence_number, p.timestamp, p.ssrc, b"\x80\x80") for p in packets
            ]
        for packet in packets:
            await video.on_rtp(packet, time.time())
        await asyncio.sleep(1 / FPS)
    # the recorder's own port: garbage that is not RTP at all
    port = recorder.video_slot.port
    assert port is not None
    await port.send(0, b"\x00\x01", 2)
    result = await recorder.stop()
    assert recorder.stats.malformed == 1
    assert recorder.video_order.reordered >= 1 and recorder.video_order.skipped >= 1
    assert recorder.vp8.gaps >= 1 and recorder.vp8.malformed >= 1
    assert recorder.stats.keyframe_requests >= 2 and source.keyframe_asked >= 2
    decoded = decode(path)
    # every frame written decodes; the late one is there; 12 and 35 (and the frames after each
    # until the keyframe asked for) are not
    assert decoded.video_frames == result.video_frames
    assert all(a < b for a, b in itertools.pairwise(decoded.marks))
    assert decoded.marks[:12] == list(range(12))
    assert 12 not in decoded.marks and 35 not in decoded.marks
    assert 13 < len(decoded.marks) < 58 and max(decoded.marks) == 59


async def test_recorder_without_media_leaves_no_file(tmp_path: Path) -> None:
    relay = Relay()
    path = tmp_path / "empty.webm"
    recorder = Recorder(path, relay, config=RecorderConfig(header_wait_s=0.05))
    recorder.start()
    await asyncio.sleep(0.2)  # the header is due, but there is nothing to write
    result = await recorder.stop()
    assert result.size == 0 and result.video_frames == result.audio_frames == 0
    assert not path.exists()
    assert relay.slots == {}  # the recorder's slots left the relay


async def test_recorder_audio_only_uses_the_default_size(tmp_path: Path) -> None:
    relay = Relay()
    video = relay.create_publication("cam/video", "video")
    audio = relay.create_publication("cam/audio", "audio")
    source = Source(video, audio)
    path = tmp_path / "audio.webm"
    config = RecorderConfig(header_wait_s=0.3)
    recorder = Recorder(path, relay, config=config, video_size=(1920, 1080))
    relay.route(recorder.audio_slot, audio)
    recorder.start()
    await source.run(1.0)
    result = await recorder.stop()
    assert result.video_size == (1920, 1080) and result.video_frames == 0
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.width == 1920
    decoded = decode(path)
    assert decoded.video_frames == 0 and decoded.audio_frames == result.audio_frames > 40


async def test_a_stalled_disk_drops_frames_and_never_blocks_the_relay(tmp_path: Path) -> None:
    """The file is a FIFO nobody reads yet: the writer thread blocks opening it, as on a hung
    disk. The relay keeps forwarding, the recorder drops and counts; once the FIFO is read the
    writer catches up and what it wrote decodes."""
    path = tmp_path / "stalled.webm"
    os.mkfifo(path)
    relay = Relay()
    video = relay.create_publication("cam/video", "video")
    audio = relay.create_publication("cam/audio", "audio")
    source = Source(video, audio)
    recorder = Recorder(path, relay, config=RecorderConfig(queue_frames=16))
    relay.route(recorder.video_slot, video)
    relay.route(recorder.audio_slot, audio)
    recorder.start()
    await source.run(1.5)  # returns: nothing waited for the disk
    assert recorder.stats.muxed == 0 and recorder.stats.queue_dropped > 50
    assert recorder.video_slot.packets_forwarded > 40  # the relay kept forwarding
    received = bytearray()

    def drain() -> None:
        with open(path, "rb") as fifo:
            while chunk := fifo.read(65536):
                received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    await source.run(1.0)  # the writer catches up; keyframes were asked for meanwhile
    await recorder.stop()
    await asyncio.get_running_loop().run_in_executor(None, reader.join)
    copy = tmp_path / "copy.webm"
    copy.write_bytes(received)
    decoded = decode(copy)
    assert 0 < decoded.video_frames <= recorder.stats.video_frames
    assert decoded.audio_frames > 0
    assert source.keyframe_asked >= 1


# -- a recorder killed mid-way -----------------------------------------------------------------


async def _record_until_killed(path: Path) -> None:
    relay = Relay()
    video = relay.create_publication("cam/video", "video")
    audio = relay.create_publication("cam/audio", "audio")
    source = Source(video, audio)
    recorder = Recorder(path, relay, config=RecorderConfig(cluster_ms=500))
    relay.route(recorder.video_slot, video)
    relay.route(recorder.audio_slot, audio)
    recorder.start()
    task = asyncio.ensure_future(source.run(3600))
    while recorder.stats.muxed < 120:  # about two seconds written
        await asyncio.sleep(0.05)
    print("recording", flush=True)
    await task


async def test_recorder_killed_mid_way_leaves_a_playable_file(tmp_path: Path) -> None:
    path = tmp_path / "killed.webm"
    root = Path(__file__).resolve().parent.parent
    process = subprocess.Popen(
        [sys.executable, __file__, str(path)], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = await asyncio.get_running_loop().run_in_executor(None, process.stdout.readline)
        assert line.strip() == "recording", f"the recorder process said {line!r}"
        await asyncio.sleep(1.0)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    decoded = decode(path)
    assert decoded.video_frames > 30 and decoded.audio_frames > 50
    assert decoded.marks == list(range(decoded.marks[0], decoded.marks[0] + len(decoded.marks)))
    assert decoded.duration > 1.0


# -- through the real server -------------------------------------------------------------------

CHAIR, ZHUJI, XIANCUN, WALL_OUTPUT = "tianhe", "tianhe.zhuji", "tianhe.xiancun", "wall"
ZHUJI_TAG, XIANCUN_TAG = 5, 6


class ToneTrack(MediaStreamTrack):
    """A microphone playing a sine tone in real time (20 ms mono frames)."""

    kind = "audio"

    def __init__(self, frequency: float) -> None:
        super().__init__()
        self.frequency = frequency
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        wait = self._start + self._index * 0.02 - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = tone(self._index, self.frequency)
        self._index += 1
        return frame


@dataclass
class Site:
    signalling: Client
    media: LoopbackClient

    async def close(self) -> None:
        await self.media.close()
        await self.signalling.close()


async def join(app: Huishang, site: str, video: MediaStreamTrack | None, hz: float) -> Site:
    """A terminal (or the chair) publishing a tone and, optionally, marked video."""
    token = app.token_for(SiteId(site))
    assert token is not None
    signalling = await Client.connect(app.signalling_url, token)
    media = LoopbackClient()
    media.pc.addTrack(ToneTrack(hz))
    if video is not None:
        media.pc.addTrack(video)
    await media.pc.setLocalDescription(await media.pc.createOffer())
    reply = await signalling.request({"type": "offer", "sdp": media.pc.localDescription.sdp})
    await media.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    await wait_for(lambda: media.pc.connectionState == "connected", 20, f"{site} connected")
    return Site(signalling, media)


def gateway_of(app: Huishang) -> RecordingGateway:
    return next(g for g in app.gateways if isinstance(g, RecordingGateway))


async def record_through_server(
    app: Huishang,
    chair: Site,
    seconds: float,
    midway: Callable[[Recorder], Awaitable[None]] | None = None,
) -> tuple[RecordingEntry, float]:
    """The chair switches recording on, waits (doing *midway* half-way), switches it off; the
    finished index entry and how long the recorder had media."""
    gateway = gateway_of(app)
    await chair.signalling.request({"type": "record", "on": True})
    await wait_for(lambda: gateway.active is not None, 10, "the recorder started")
    assert gateway.active is not None
    recorder = gateway.active.recorder
    entry_id = gateway.active.entry.id
    await wait_for(lambda: recorder.stats.video_frames > 0, 20, "video recorded")
    await wait_for(lambda: recorder.stats.audio_frames > 0, 20, "audio recorded")
    started = time.monotonic()
    if midway is not None:
        await asyncio.sleep(seconds / 2)
        await midway(recorder)
    await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))
    await chair.signalling.request({"type": "record", "on": False})
    recorded_for = time.monotonic() - started
    await wait_for(lambda: gateway.active is None, 20, "the recorder stopped")

    def finished() -> bool:
        entry = app.store.recording(entry_id)
        return entry is not None and entry.ended_at is not None

    await wait_for(finished, 20, "the index entry finished")
    entry = app.store.recording(entry_id)
    assert entry is not None
    return entry, recorded_for


async def test_chair_records_the_wall_output_with_programme_audio(server: Huishang) -> None:
    chair = await join(server, CHAIR, None, 440.0)
    zhuji = await join(server, ZHUJI, MarkedVideoTrack(ZHUJI_TAG), 1000.0)
    try:
        await chair.signalling.request({"type": "floor", "site": ZHUJI})  # audio: the mix
        entry, recorded_for = await record_through_server(server, chair, 3.0)
        assert entry.source == WALL_OUTPUT
        assert entry.conference_id == server.conference.config.conference_id
        path = server.config.data_dir / "recordings" / entry.file
        assert entry.size == path.stat().st_size > 0
        decoded = decode(path)
        assert decoded.size == (1920, 1080)  # the wall output's canvas
        assert decoded.video_frames > 10 and decoded.audio_frames > 50
        assert decoded.audio_rms > 300  # the programme's tones, not silence
        # the file covers the time the recorder had media, give or take the startup
        assert recorded_for - 1.0 < decoded.duration < recorded_for + 3.0
        assert abs(entry.duration_s - decoded.duration) < 0.5
        # a second recording in the same conference: a second file, a second entry
        second, _ = await record_through_server(server, chair, 0.5)
        assert second.id != entry.id and second.file != entry.file
        assert [r.id for r in server.store.recordings()] == [second.id, entry.id]
    finally:
        await zhuji.close()
        await chair.close()


async def test_chair_records_the_programme_across_a_floor_change(server: Huishang) -> None:
    """The programme follows the floor: 珠吉街, then 冼村街. The relay switches the recorder's
    slot at 冼村街's keyframe and keeps numbers continuous (new SSRC, new timestamps): the file
    shows one source, then the other, and plays through."""
    gateway_of(server).config = RecordingConfig(source=PROGRAMME)
    chair = await join(server, CHAIR, None, 440.0)
    zhuji = await join(server, ZHUJI, MarkedVideoTrack(ZHUJI_TAG), 1000.0)
    xiancun = await join(server, XIANCUN, MarkedVideoTrack(XIANCUN_TAG), 2500.0)
    assert server.media is not None
    media = server.media

    async def floor_to_xiancun(recorder: Recorder) -> None:
        await chair.signalling.request({"type": "floor", "site": XIANCUN})
        publication = media.publication(XIANCUN, "video")
        await wait_for(lambda: recorder.video_slot.source is publication, 10, "switched")

    try:
        await chair.signalling.request({"type": "floor", "site": ZHUJI})
        entry, _ = await record_through_server(server, chair, 3.0, floor_to_xiancun)
        assert entry.source == PROGRAMME
        decoded = decode(server.config.data_dir / "recordings" / entry.file)
        assert decoded.size == (320, 240)  # the cameras' own pictures, forwarded as they came
        assert decoded.video_frames > 30 and decoded.audio_frames > 75
        tags = [mark >> 12 for mark in decoded.marks]
        switch = tags.index(XIANCUN_TAG)
        assert switch > 5 and set(tags[:switch]) == {ZHUJI_TAG}
        assert set(tags[switch:]) == {XIANCUN_TAG}
        for run in (decoded.marks[:switch], decoded.marks[switch:]):  # each in its own order
            assert all(a < b for a, b in itertools.pairwise(run))
        assert decoded.duration > 2.0
    finally:
        await xiancun.close()
        await zhuji.close()
        await chair.close()


async def test_recordings_api_and_download(server: Huishang) -> None:
    chair = await join(server, CHAIR, None, 440.0)
    zhuji = await join(server, ZHUJI, MarkedVideoTrack(ZHUJI_TAG), 1000.0)
    chair_token = server.token_for(SiteId(CHAIR))
    zhuji_token = server.token_for(SiteId(ZHUJI))
    assert chair_token is not None and zhuji_token is not None
    try:
        entry, _ = await record_through_server(server, chair, 1.0)
        path = server.config.data_dir / "recordings" / entry.file
        url = server.web_url
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/recordings", params={"token": chair_token}) as r:
                assert r.status == 200
                body = await r.json()
            assert body["recording"] is False
            (listed,) = body["recordings"]
            assert listed["id"] == entry.id and listed["file"] == entry.file
            assert listed["size"] == path.stat().st_size and listed["ended_at"] is not None
            assert listed["url"] == f"/recordings/{entry.id}"
            download = f"{url}/recordings/{entry.id}"
            async with http.get(download, params={"token": chair_token}) as r:
                assert r.status == 200
                assert r.headers["Content-Disposition"] == f'attachment; filename="{entry.file}"'
                assert r.headers["Content-Type"] == "video/webm"
                assert await r.read() == path.read_bytes()
            bearer = {"Authorization": f"Bearer {chair_token}"}
            async with http.get(download, headers=bearer) as r:
                assert r.status == 200
            for target in (download, f"{url}/api/recordings"):
                async with http.get(target, params={"token": zhuji_token}) as r:
                    assert r.status == 403
                async with http.get(target) as r:
                    assert r.status == 401
                async with http.get(target, params={"token": "not-a-token"}) as r:
                    assert r.status == 401
            for bad in (str(entry.id + 1), "abc", "-1", "9" * 40, "..%2F..%2Fhuishang.sqlite3"):
                async with http.get(f"{url}/recordings/{bad}", params={"token": chair_token}) as r:
                    assert r.status == 404, bad
            # an entry whose file left the folder is a 404 too, never another path
            stray = server.store.start_recording(
                server.conference.config.conference_id, "gone.webm", "wall", time.time()
            )
            async with http.get(f"{url}/recordings/{stray.id}", params={"token": chair_token}) as r:
                assert r.status == 404
    finally:
        await zhuji.close()
        await chair.close()


async def test_shutdown_stops_and_indexes_a_running_recording(
    demo_config: HuishangConfig,
) -> None:
    app = await Huishang.open(config=demo_config)
    chair = await join(app, CHAIR, None, 440.0)
    try:
        await chair.signalling.request({"type": "record", "on": True})
        gateway = gateway_of(app)
        await wait_for(lambda: gateway.active is not None, 10, "the recorder started")
        assert gateway.active is not None
        recorder, entry_id = gateway.active.recorder, gateway.active.entry.id
        await wait_for(lambda: recorder.stats.muxed > 30, 20, "media recorded")
    finally:
        await chair.close()
        await app.close()
    with Store.in_data_dir(demo_config.data_dir) as store:
        entry = store.recording(entry_id)
    assert entry is not None and entry.ended_at is not None
    path = demo_config.data_dir / "recordings" / entry.file
    assert entry.size == path.stat().st_size
    assert decode(path).video_frames > 0


async def test_unfinished_entries_are_completed_at_start(demo_config: HuishangConfig) -> None:
    """A server that died while recording left an unfinished entry: the next one completes
    it from the file, or drops it when the file is gone."""
    folder = demo_config.data_dir / "recordings"
    folder.mkdir(parents=True)
    (folder / "left.webm").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(1000))
    with Store.in_data_dir(demo_config.data_dir) as store:
        store.start_conference("old", "旧会商", time.time() - 60)
        left = store.start_recording("old", "left.webm", "wall", time.time() - 50)
        gone = store.start_recording("old", "gone.webm", "wall", time.time() - 40)
    app = await Huishang.open(config=demo_config)
    try:
        entry = app.store.recording(left.id)
        assert entry is not None and entry.ended_at is not None and entry.size == 1004
        assert app.store.recording(gone.id) is None
    finally:
        await app.close()


if __name__ == "__main__":  # the process test_recorder_killed_mid_way... kills
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_record_until_killed(Path(sys.argv[1])))


async def test_a_recorder_that_cannot_start_turns_recording_off_everywhere(
    demo_config: HuishangConfig,
) -> None:
    app = await Huishang.open(config=demo_config)
    (demo_config.data_dir / "recordings").write_text("not a folder")  # the disk refuses
    token = app.token_for(SiteId(CHAIR))
    assert token is not None
    chair = await Client.connect(app.signalling_url, token)
    try:
        await chair.request({"type": "record", "on": True})
        await chair.next_event("recording", where=lambda e: e["on"] is True)
        off = await chair.next_event("recording", where=lambda e: e["on"] is False)
        assert off == {"type": "recording", "on": False}
        assert app.conference.recording is False
        assert gateway_of(app).active is None
        assert app.store.recordings() == []  # no row for a file that was never made
    finally:
        await chair.close()
        await app.close()
