"""bridge.vp8_publisher: decoded frames in, one VP8 publication out.

A real :class:`~bridge.slot.Slot` carries the publisher's publication into a recording port
(the subscriber side of aiortc), and the test depacketises and decodes what arrived with
PyAV's VP8 decoder: keyframes on PLI, a new encoder on a size change, newest frame wins,
nothing encoded while nobody watches, close.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from dataclasses import dataclass, field

import av
import pytest
from av.codec.context import CodecContext
from av.video.codeccontext import VideoCodecContext

from bridge.encoder import EncoderConfig
from bridge.publication import RelayConfig
from bridge.rtp import is_vp8_keyframe, parse_rtp, parse_vp8_descriptor
from bridge.slot import Slot
from bridge.testkit import RecordingPort, mark_frame, read_mark, record_slot, wait_for
from bridge.vp8_publisher import Vp8Publisher, Vp8RtpStream, ntp_timestamp


@dataclass
class Received:
    """Depacketised and decoded frames of one slot."""

    port: RecordingPort
    read: int = 0
    keyframes: int = 0
    frames: list[av.VideoFrame] = field(default_factory=list)
    _parts: list[bytes] = field(default_factory=list)
    _decoder: VideoCodecContext | None = None

    def poll(self) -> list[av.VideoFrame]:
        """Decode what arrived since the last call."""
        if self._decoder is None:
            codec = CodecContext.create("vp8", "r")
            assert isinstance(codec, VideoCodecContext)
            self._decoder = codec
        new: list[av.VideoFrame] = []
        for data in self.port.sent[self.read :]:
            packet = parse_rtp(data, {})
            descriptor = parse_vp8_descriptor(packet.payload)
            if is_vp8_keyframe(packet.payload):
                self.keyframes += 1
            self._parts.append(packet.payload[descriptor.size :])
            if packet.marker:
                chunk = av.Packet(b"".join(self._parts))
                self._parts.clear()
                for frame in self._decoder.decode(chunk):
                    assert isinstance(frame, av.VideoFrame)
                    new.append(frame)
        self.read = len(self.port.sent)
        self.frames.extend(new)
        return new


def subscribe(publisher: Vp8Publisher) -> tuple[Slot, Received]:
    slot = Slot("s", "video", config=publisher.publication.config)
    port = record_slot(slot, initial_sequence=1000)
    slot.switch(publisher.publication)
    return slot, Received(port)


def publisher(**kwargs: object) -> Vp8Publisher:
    out = Vp8Publisher(
        "cam",
        encoder=EncoderConfig(bitrate=800_000, keyframe_interval_s=60.0),
        fps_hint=30,
        relay_config=RelayConfig(pli_interval_s=0.0),
        min_keyframe_interval_s=0.0,
        **kwargs,  # type: ignore[arg-type]
    )
    out.start()
    return out


async def feed(
    pub: Vp8Publisher, received: Received, first: int, count: int, size: tuple[int, int]
) -> list[av.VideoFrame]:
    """Submit frames *first*.. one at a time, each once the previous one arrived."""
    out: list[av.VideoFrame] = []
    loop = asyncio.get_running_loop()
    for value in range(first, first + count):
        before = pub.stats.sent
        pub.submit(mark_frame(value, *size), loop.time())
        await wait_for(lambda b=before: pub.stats.sent > b, 10, f"frame {value} sent")  # type: ignore[misc]
        out.extend(received.poll())
    return out


async def test_frames_reach_a_slot_first_as_a_keyframe() -> None:
    pub = publisher()
    _slot, received = subscribe(pub)
    try:
        frames = await feed(pub, received, 100, 5, (320, 240))
        assert [read_mark(f) for f in frames] == [100, 101, 102, 103, 104]
        assert {(f.width, f.height) for f in frames} == {(320, 240)}
        assert received.keyframes == 1  # the first frame, then deltas
        assert pub.publication.keyframes_seen == 1
        assert pub.publication.last_sender_report is not None  # SR pair for lip sync
    finally:
        await pub.close()


async def test_a_pli_forces_a_keyframe() -> None:
    pub = publisher()
    slot, received = subscribe(pub)
    try:
        await feed(pub, received, 0, 3, (320, 240))
        assert received.keyframes == 1
        slot.request_keyframe()  # the subscriber sent PLI
        assert pub.stats.keyframe_requests >= 1
        frames = await feed(pub, received, 3, 3, (320, 240))
        assert received.keyframes == 2
        assert [read_mark(f) for f in frames] == [3, 4, 5]
    finally:
        await pub.close()


async def test_a_new_frame_size_recreates_the_encoder() -> None:
    pub = publisher()
    _slot, received = subscribe(pub)
    try:
        small = await feed(pub, received, 0, 3, (320, 240))
        large = await feed(pub, received, 3, 3, (640, 480))
        assert {(f.width, f.height) for f in small} == {(320, 240)}
        assert {(f.width, f.height) for f in large} == {(640, 480)}
        assert [read_mark(f) for f in large] == [3, 4, 5]
        assert pub.stats.encoders_opened == 2 and received.keyframes == 2
    finally:
        await pub.close()


async def test_tall_frames_are_scaled_down_to_max_height() -> None:
    pub = publisher(max_height=240)
    _slot, received = subscribe(pub)
    try:
        frames = await feed(pub, received, 7, 2, (640, 480))
        assert {(f.width, f.height) for f in frames} == {(320, 240)}
        assert [read_mark(f) for f in frames] == [7, 8]
        frames = await feed(pub, received, 9, 1, (320, 240))  # small enough: as it is
        assert (frames[0].width, frames[0].height) == (320, 240)
    finally:
        await pub.close()


async def test_the_newest_frame_wins_and_nothing_queues() -> None:
    pub = publisher()
    _slot, received = subscribe(pub)
    try:
        await feed(pub, received, 0, 1, (320, 240))
        frames = [mark_frame(v, 640, 480) for v in range(1000, 1300)]

        def burst() -> None:  # a decoder thread much faster than the encoder
            for value, frame in enumerate(frames, 1000):
                pub.submit(frame, float(value))

        thread = threading.Thread(target=burst)
        thread.start()
        thread.join()
        await wait_for(lambda: pub.stats.encoded + pub.stats.replaced == 301, 10, "idle")
        await wait_for(lambda: pub.stats.sent == pub.stats.encoded, 10, "all sent")
        received.poll()
        marks = [read_mark(f) for f in received.frames]
        assert pub.stats.replaced > 0  # skipped, not queued
        assert pub.stats.encoded < 301
        assert marks[-1] == 1299  # the newest frame was encoded last
        assert marks == sorted(marks)  # never out of order
    finally:
        await pub.close()


async def test_nothing_is_encoded_while_nobody_watches() -> None:
    pub = publisher()
    try:
        for value in range(10):
            pub.submit(mark_frame(value), float(value))
        assert pub.stats.unwatched == 10 and pub.stats.encoded == 0
        assert not pub.watched
        _slot, received = subscribe(pub)
        assert pub.watched
        frames = await feed(pub, received, 10, 2, (320, 240))
        assert [read_mark(f) for f in frames] == [10, 11]
        assert received.keyframes == 1
    finally:
        await pub.close()


async def test_the_rate_follows_the_subscribers_estimate() -> None:
    pub = publisher(bitrate_interval_s=3600.0)
    slot, received = subscribe(pub)
    try:
        await feed(pub, received, 0, 2, (320, 240))
        assert pub.bitrate == 800_000 and received.keyframes == 1
        slot.on_remb(300_000)  # the subscriber's receive estimate (REMB)
        assert pub.remb == 300_000
        frames = await feed(pub, received, 2, 2, (320, 240))
        assert pub.bitrate == 300_000 and pub.stats.bitrate_changes == 1
        assert received.keyframes == 2  # the reopened encoder starts with a keyframe
        assert [read_mark(f) for f in frames] == [2, 3]
        slot.on_remb(10_000)  # below the floor: clamped to lowest_bitrate (bitrate / 5)
        await feed(pub, received, 4, 1, (320, 240))
        assert pub.bitrate == 300_000  # not yet due: one change per bitrate_interval_s
        assert pub.stats.bitrate_changes == 1
    finally:
        await pub.close()


async def test_close_blanks_the_slot_and_is_idempotent() -> None:
    pub = publisher()
    slot, received = subscribe(pub)
    await feed(pub, received, 0, 2, (320, 240))
    await pub.close()
    assert pub.publication.closed and slot.source is None
    pub.submit(mark_frame(5), 5.0)  # ignored, never raises
    sent = len(received.port.sent)
    await asyncio.sleep(0.1)
    assert len(received.port.sent) == sent
    await pub.close()


async def test_a_publisher_not_started_ignores_frames() -> None:
    pub = Vp8Publisher("cam")
    pub.submit(mark_frame(1), 0.0)
    assert pub.stats.submitted == 0
    await pub.close()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="fps_hint"):
        Vp8Publisher("cam", fps_hint=0)
    with pytest.raises(ValueError, match="max_height"):
        Vp8Publisher("cam", max_height=8)


async def test_rtp_stream_numbers_and_sender_reports() -> None:
    pub = Vp8Publisher("cam")
    stream = Vp8RtpStream(pub.publication, max_payload=200, sender_report_interval_s=1.0)
    first = stream.packets_of(b"\x10" + bytes(500), stream.rtp_timestamp(10.0))
    second = stream.packets_of(b"\x11" + bytes(10), stream.rtp_timestamp(10.5))
    assert len(first) == 3 and [p.marker for p in first] == [False, False, True]
    seqs = [p.sequence_number for p in first + second]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    assert (second[0].timestamp - first[0].timestamp) & 0xFFFFFFFF == 45000  # 0.5 s at 90 kHz
    pid = [parse_vp8_descriptor(p.payload).picture_id for p in (first[0], second[0])]
    assert pid[0] is not None and pid[1] == (pid[0] + 1) & 0x7FFF
    assert ntp_timestamp(0.0) == 2208988800 << 32
    await stream.send_frame(b"\x10" + bytes(50), 11.0, 1000.0)
    report = pub.publication.last_sender_report
    assert report is not None and report.ntp_timestamp == ntp_timestamp(1000.0)
    assert report.rtp_timestamp == stream.rtp_timestamp(11.0)
    await pub.close()
