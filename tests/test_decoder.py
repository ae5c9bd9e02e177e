"""bridge.decoder: decoding a publication for the wall, from the relay's RTP (RFC 7741)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiortc.mediastreams import MediaStreamError

from bridge.decode_pool import DecodePool
from bridge.decoder import DecoderConfig, VideoDecoder
from bridge.encoder import EncoderConfig, Vp8Encoder, packetize_vp8
from bridge.publication import Publication
from bridge.rtp import RtpPacket
from bridge.testkit import mark_frame, read_mark, wait_for

FRAME_TICKS = 3000  # 90 kHz at 30 fps


@pytest.fixture(scope="module")
def clip() -> list[tuple[bytes, bool]]:
    """12 marked 320x240 frames, a keyframe at 0 and at 6, split into several packets each."""
    encoder = Vp8Encoder(EncoderConfig(bitrate=2_000_000), fps=30)
    out: list[tuple[bytes, bool]] = []
    for i in range(12):
        out.extend(encoder.encode(mark_frame(i), keyframe=i in (0, 6)))
    assert [key for _, key in out] == [i in (0, 6) for i in range(12)]
    return out


def packets(
    clip: list[tuple[bytes, bool]], first_seq: int = 100, max_payload: int = 40
) -> list[tuple[int, int, bool, bytes]]:
    """(seq, timestamp, marker, payload) of every frame, in order."""
    out = []
    seq = first_seq
    for i, (data, _key) in enumerate(clip):
        payloads = packetize_vp8(data, i, max_payload)
        for k, payload in enumerate(payloads):
            out.append((seq & 0xFFFF, i * FRAME_TICKS, k == len(payloads) - 1, payload))
            seq += 1
    return out


class Upstream:
    def __init__(self) -> None:
        self.plis = 0

    def request_keyframe(self) -> None:
        self.plis += 1

    def send_remb(self, bitrate: int) -> None:
        pass


def started(
    reorder_window: int = 128,
    reorder_wait_s: float = 0.1,
    *,
    pool: DecodePool | None = None,
    backlog_frames: int = 64,  # the tests feed whole clips at once
    name: str = "pub",
) -> tuple[Publication, Upstream, VideoDecoder]:
    """A publication with a decoder on it (frames kept for the test to read)."""
    publication = Publication(name, "video")
    upstream = Upstream()
    publication.bind(upstream)
    config = DecoderConfig(
        queue_frames=16,
        reorder_window=reorder_window,
        reorder_wait_s=reorder_wait_s,
        backlog_frames=backlog_frames,
    )
    decoder = VideoDecoder(name, config=config, pool=pool)
    decoder.start(publication)
    return publication, upstream, decoder


async def feed(publication: Publication, items: list[tuple[int, int, bool, bytes]]) -> None:
    for seq, timestamp, marker, payload in items:
        packet = RtpPacket(96, seq, timestamp, 1234, payload, marker)
        await publication.on_rtp(packet, 0.0)


async def test_decoder_yields_marked_frames_from_the_next_keyframe(
    clip: list[tuple[bytes, bool]],
) -> None:
    publication, upstream, decoder = started()
    assert upstream.plis == 1  # a keyframe is asked for at once
    items = packets(clip)
    await feed(publication, [i for i in items if 1 <= i[1] // FRAME_TICKS < 6])  # no keyframe
    await feed(publication, [i for i in items if i[1] // FRAME_TICKS >= 6])
    marks = []
    for _ in range(6):
        frame = await asyncio.wait_for(decoder.track.recv(), 10)
        assert (frame.width, frame.height) == (320, 240)
        marks.append(read_mark(frame))
    assert marks == [6, 7, 8, 9, 10, 11]
    assert decoder.stats.frames_decoded == 6
    decoder.close()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(decoder.track.recv(), 10)


async def test_stopped_decoder_decodes_nothing_and_restarts_at_a_keyframe(
    clip: list[tuple[bytes, bool]],
) -> None:
    publication, _upstream, decoder = started()
    track = decoder.track
    items = packets(clip)
    await feed(publication, [i for i in items if i[1] // FRAME_TICKS < 3])
    assert read_mark(await asyncio.wait_for(track.recv(), 10)) == 0
    decoder.stop()
    assert not publication.slots  # the decoder's slot is gone from the publication
    await feed(publication, [i for i in items if 3 <= i[1] // FRAME_TICKS < 6])
    await asyncio.sleep(0.2)
    while not track._queue.empty():  # frames 1, 2 decoded before the stop
        track._queue.get_nowait()
    decoder.start(publication)
    decoder.start(publication)  # idempotent
    assert len(publication.slots) == 1
    await feed(publication, [i for i in items if i[1] // FRAME_TICKS >= 6])
    assert read_mark(await asyncio.wait_for(track.recv(), 10)) == 6
    assert decoder.track is track
    decoder.close()
    decoder.close()  # idempotent
    with pytest.raises(RuntimeError):
        decoder.start(publication)


async def test_a_corrupt_frame_asks_for_a_keyframe_and_decoding_recovers(
    clip: list[tuple[bytes, bool]],
) -> None:
    publication, _upstream, decoder = started()
    items = packets(clip)
    keyframe = [i for i in items if i[1] == 0]
    # a keyframe whose data is garbage after the descriptor and the 3-byte frame tag
    broken = [(s, t, m, p[:7] + bytes(len(p) - 7)) for s, t, m, p in keyframe]
    await feed(publication, broken)
    await feed(publication, [i for i in items if i[1] > 0])
    marks = [read_mark(await asyncio.wait_for(decoder.track.recv(), 10)) for _ in range(6)]
    assert marks == [6, 7, 8, 9, 10, 11]  # frames 1..5 refer to the broken one: skipped
    assert decoder.stats.decode_errors == 1
    assert decoder.stats.keyframe_requests == 1
    decoder.close()


async def test_a_late_packet_still_completes_its_frame(clip: list[tuple[bytes, bool]]) -> None:
    publication, _upstream, decoder = started()
    items = packets(clip)
    late = next(i for i, item in enumerate(items) if item[1] == 3 * FRAME_TICKS)
    # a retransmission: the packet arrives after a few that followed it
    await feed(publication, items[:late] + items[late + 1 : late + 4] + [items[late]])
    await feed(publication, items[late + 4 :])
    marks = [read_mark(await asyncio.wait_for(decoder.track.recv(), 10)) for _ in range(12)]
    assert marks == list(range(12))
    assert decoder.stats.keyframe_requests == 0
    decoder.close()


async def test_a_lost_packet_drops_until_the_next_keyframe_and_asks_for_one(
    clip: list[tuple[bytes, bool]],
) -> None:
    publication, upstream, decoder = started(reorder_window=4, reorder_wait_s=0.05)
    plis = upstream.plis
    items = packets(clip)
    lost = next(i for i, item in enumerate(items) if item[1] == 2 * FRAME_TICKS and not item[2])
    await feed(publication, items[:lost])
    await asyncio.sleep(0.1)  # the retransmission never comes
    await feed(publication, items[lost + 1 :])
    marks = [read_mark(await asyncio.wait_for(decoder.track.recv(), 10)) for _ in range(8)]
    assert marks == [0, 1, 6, 7, 8, 9, 10, 11]  # nothing that needs the broken frame 2
    assert decoder.stats.keyframe_requests == 1
    assert decoder.stats.frames_dropped_broken == 4  # frames 2..5
    # the publication sends the PLI (coalesced with the first one, so maybe deferred)
    await wait_for(lambda: upstream.plis > plis, 5, "a PLI upstream")
    decoder.close()


async def test_decoders_share_a_pool_and_a_broken_feed_never_stops_the_others(
    clip: list[tuple[bytes, bool]],
) -> None:
    pool = DecodePool(1, spill_workers=0)
    decoders = [started(pool=pool, name=f"pub{i}") for i in range(3)]
    items = packets(clip)
    keyframe = [i for i in items if i[1] == 0]
    garbage = [(s, t, m, p[:7] + bytes(len(p) - 7)) for s, t, m, p in keyframe]
    broken_publication, _upstream, broken = decoders[0]
    for _round in range(3):  # keeps failing: every frame refers to a broken keyframe
        await feed(broken_publication, garbage)
    for publication, _upstream, _decoder in decoders[1:]:
        await feed(publication, items)
    for _publication, _upstream, decoder in decoders[1:]:
        marks = [read_mark(await asyncio.wait_for(decoder.track.recv(), 10)) for _ in range(12)]
        assert marks == list(range(12))
        assert decoder.thread_ids == pool.thread_ids
    await wait_for(lambda: broken.stats.decode_errors >= 1, 10, "a decode error")
    assert broken.stats.frames_decoded == 0
    assert len(pool.thread_ids) == 1  # one thread for all of them
    for _publication, _upstream, decoder in decoders:
        decoder.close()
    for _publication, _upstream, decoder in decoders:
        with pytest.raises(MediaStreamError):
            while True:  # frames left in the queue, then the end
                await asyncio.wait_for(decoder.track.recv(), 10)
    pool.close()


async def test_a_decoder_far_behind_drops_its_backlog_and_restarts_at_a_keyframe(
    clip: list[tuple[bytes, bool]],
) -> None:
    pool = DecodePool(1)
    gate = threading.Event()
    pool.strand(lambda _item: gate.wait(10), "busy").put(0)  # the worker is busy elsewhere
    publication, _upstream, decoder = started(pool=pool, backlog_frames=4)
    items = packets(clip)
    await feed(publication, [i for i in items if i[1] // FRAME_TICKS < 10])
    # 0..3 wait; 4 finds four waiting: they and 4 are dropped, 5 too (no keyframe yet);
    # the keyframe 6 starts again and 7..9 wait behind it
    assert decoder.stats.frames_dropped_backlog == 5
    assert decoder.stats.frames_dropped_broken == 1
    assert decoder.stats.keyframe_requests == 1
    gate.set()
    marks = [read_mark(await asyncio.wait_for(decoder.track.recv(), 10)) for _ in range(4)]
    assert marks == [6, 7, 8, 9]
    decoder.close()
    pool.close()


async def test_a_decoder_closed_after_its_pool_ends_its_track() -> None:
    pool = DecodePool(1)
    _publication, _upstream, decoder = started(pool=pool)
    pool.close()
    decoder.close()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(decoder.track.recv(), 10)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        DecoderConfig(codec="h264")
    with pytest.raises(ValueError):
        DecoderConfig(queue_frames=0)
    with pytest.raises(ValueError):
        DecoderConfig(reorder_wait_s=-1)
    with pytest.raises(ValueError):
        DecoderConfig(backlog_frames=0)
