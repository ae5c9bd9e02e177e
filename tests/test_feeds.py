"""bridge.feeds: a FeedReader takes a decoder's frames right in the decoding thread."""

from __future__ import annotations

import asyncio
import threading

from av import VideoFrame

from bridge.decode_pool import DecodePool
from bridge.decoder import DecoderConfig, VideoDecoder
from bridge.encoder import EncoderConfig, Vp8Encoder, packetize_vp8
from bridge.feeds import FeedReader
from bridge.publication import Publication
from bridge.rtp import RtpPacket
from bridge.testkit import mark_frame, read_mark, wait_for
from bridge.track_reader import LatestFrameTrack

FRAME_TICKS = 3000


class RecordingSink:
    """A FrameSink that keeps what it is given and in which thread."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, int, int]] = []  # source, mark, thread id
        self.removed: list[str] = []

    def push(self, source_id: str, frame: VideoFrame, now: float) -> None:
        self.frames.append((source_id, read_mark(frame), threading.get_ident()))

    def remove(self, source_id: str) -> None:
        self.removed.append(source_id)


class Upstream:
    def request_keyframe(self) -> None:
        pass

    def send_remb(self, bitrate: int) -> None:
        pass


async def send(publication: Publication, frames: range, encoder: Vp8Encoder, seq: int = 100) -> int:
    """Frames ``frames`` as RTP from sequence number ``seq`` on; returns the next one."""
    for i in frames:
        for data, _key in encoder.encode(mark_frame(i), keyframe=i % 6 == 0):
            payloads = packetize_vp8(data, i, 200)
            for k, payload in enumerate(payloads):
                marker = k == len(payloads) - 1
                packet = RtpPacket(96, seq & 0xFFFF, i * FRAME_TICKS, 1234, payload, marker)
                await publication.on_rtp(packet, 0.0)
                seq += 1
    return seq


async def test_a_reader_takes_decoded_frames_in_the_worker_and_none_once_inactive() -> None:
    pool = DecodePool(1)
    publication = Publication("pub", "video")
    publication.bind(Upstream())
    decoder = VideoDecoder("pub", config=DecoderConfig(backlog_frames=64), pool=pool)
    decoder.start(publication)
    sink = RecordingSink()
    reader = FeedReader("site-1", decoder.track, [sink])
    assert decoder.track.consumer is not None  # attached: no hop through the event loop
    encoder = Vp8Encoder(EncoderConfig(bitrate=2_000_000), fps=30)
    seq = await send(publication, range(0, 6), encoder)
    await wait_for(lambda: len(sink.frames) == 6, 10, "six frames in the sink")
    assert [mark for _source, mark, _thread in sink.frames] == list(range(6))
    assert {thread for _s, _m, thread in sink.frames} != {threading.get_ident()}
    assert reader.frames == 6

    reader.active = False  # from here on nothing reaches the sink
    await send(publication, range(6, 12), encoder, seq)
    await wait_for(lambda: decoder.stats.frames_decoded == 12, 10, "12 frames decoded")
    assert len(sink.frames) == 6
    assert reader.drained == 6

    await reader.close()
    assert decoder.track.consumer is None  # detached: frames queue for recv() again
    decoder.close()
    pool.close()


async def test_a_reader_of_a_plain_track_reads_in_its_task() -> None:
    track = LatestFrameTrack()
    sink = RecordingSink()
    reader = FeedReader("camera", track, [sink])
    track.put(mark_frame(3))
    await wait_for(lambda: len(sink.frames) == 1, 10, "one frame in the sink")
    assert sink.frames[0][:2] == ("camera", 3)
    assert sink.frames[0][2] == threading.get_ident()  # on the event loop
    track.stop()
    await wait_for(lambda: reader.done, 10, "the reader to end")
    await asyncio.sleep(0)
