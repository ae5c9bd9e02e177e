"""Decoding one VP8 publication for the wall, straight from the relay's RTP.

ARCHITECTURE.md, "The wall": only feeds on the wall are decoded, one decoder per feed. A
:class:`VideoDecoder` is fed like any subscriber: a :class:`~bridge.slot.Slot` on the
publication with a :class:`~bridge.slot.DownstreamPort` of its own, so the relay's keyframe
wait (PLI at once), source switches, publisher restarts and NACK-repaired packets all work as
for a display, and nothing of aiortc's receiver (depacketiser, jitter buffer, decoder thread)
runs. Then:

- :class:`~bridge.depacketizer.ReorderBuffer` puts the packets back in sequence order,
  waiting up to ``reorder_wait_s`` for a retransmission (the relay NACKs gaps upstream), and
  :class:`~bridge.depacketizer.Vp8Depacketizer` (RFC 7741 sections 4.1–4.3) joins each frame's
  payloads; a frame that a lost packet broke is dropped with everything after it until the
  next keyframe, which is asked for at once, so the decoder is never fed a broken reference
  chain (the same classes the recorder uses);
- a worker thread decodes with PyAV (the GIL is released while FFmpeg decodes),
  ``thread_count=1`` (FIELD-NOTES.md: automatic threads cost more CPU on small pictures for
  nothing). The workers are a :class:`~bridge.decode_pool.DecodePool` shared by all the
  wall's decoders (each decoder's frames in order on whichever worker is free), or, without
  one, a thread of the decoder's own. A worker that falls ``backlog_frames`` behind one
  feed drops what waits and starts again at a keyframe (asked for at once): frames that wait
  only add delay;
- frames leave through :attr:`VideoDecoder.track`, a :class:`~aiortc.MediaStreamTrack` (the
  :class:`~bridge.track_reader.DecodedSource` contract), whose queue keeps only the newest
  ``queue_frames`` frames: a reader that falls behind skips pictures instead of adding delay.
  A reader that can take frames in the decoding thread (the wall's
  :class:`~bridge.feeds.FeedReader`) attaches to the track instead
  (:meth:`DecodedVideoTrack.attach`): no hop through the event loop per frame.

Measured on this shared 2-core machine (load average 5–8 from other jobs: compare within a
run). ``benchmarks/wall_bench.py --decoders``: 25 decoders of the benchmark's 360p clip
(~580 kbit/s) side by side, round robin, one thread, CPU ms per frame, medians of 3 rounds in
each of three runs:

============================  ======================  ==========================
decoder                       25 side by side         one alone (cache-hot)
============================  ======================  ==========================
FFmpeg native ``vp8``         0.46 – 0.55             0.49
libvpx through FFmpeg         0.55 – 0.64             0.50
native, ``skip_loop_filter``  --                      0.34, but 30 dB drift
============================  ======================  ==========================

So the native decoder (15–20 % cheaper side by side) is the default; it also handles a size
change on any keyframe. Skipping the loop filter would save 30 %, but VP8's loop filter is
in the prediction loop: the pictures drift from the encoder's (PSNR 32.6 dB on the
keyframe, 29.7 dB 4 s later; 31.9 dB even scaled to the tile), and browsers send keyframes
only on request: rejected.

End to end (``benchmarks/wall_bench.py``, 25 feeds at 30 fps, this path and aiortc's in the
same run, three runs): decoding cost 0.62–0.67 ms per frame through this module against
0.74–0.88 ms through aiortc's receive path (46–50 % of a core against 56–65 % for the 25
feeds), and the delay from a source frame to the wall frame that shows it fell from 95–146 ms
to 54–80 ms median (aiortc's jitter buffer holds each frame until the next one starts:
FIELD-NOTES.md).

Where the live 0.68–0.70 ms per frame goes, against 0.48 for the same 25 decoders fed back
to back in one thread (quiet machine, load < 2; one process, interleaved rounds, medians):

- +0.09 ms: the frame rate itself. The same loop paced at 750 frames/s (sleeping between
  frames, nothing else running) costs 0.57 ms: each frame starts on an idle, cold core of
  this virtual machine. Batching 4–25 frames per wake-up did not buy it back (0.52–0.56).
- +0.1 ms: the live path in the decoding thread (perf: 83 % of its time in libavcodec, 7 %
  Python, 5 % kernel, 3 % libc): packet and frame objects, the hand-off, GIL hand-overs.
- Not the threads: one :class:`~bridge.decode_pool.DecodePool` thread for all 25 feeds
  (the product's: ``Relay.decode_pool``) measured the same CPU per frame as a thread per
  feed (0.66 / 0.68 and 0.67 / 0.67 ms in two quiet runs). Under CPU contention from other
  processes one thread gets fewer scheduler shares than 25: at load 12 the pool decoded
  6.7 of 30 frames per second per feed (the backlog drops kept the delay bounded), a
  thread per feed ~20; the pool's spill workers are there for that.
- The hop through the event loop was real, but on the loop: handing frames to an attached
  reader in the decoding thread took the loop from 19–22 % to 14–15 % of a core (25 feeds).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.codec.context import CodecContext
from av.video.codeccontext import VideoCodecContext

from .decode_pool import DecodePool
from .depacketizer import ReorderBuffer, Vp8Depacketizer
from .publication import Publication, RelayConfig
from .rtp import StreamRewriter, parse_rtp
from .slot import Slot

__all__ = ["DecodedVideoTrack", "DecoderConfig", "DecoderStats", "VideoDecoder"]

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)  # RFC 7741 4.1: 90 kHz RTP clock


@dataclass(frozen=True, slots=True)
class DecoderConfig:
    """How wall feeds are decoded (see the module docstring for the measurements)."""

    codec: str = "vp8"  # FFmpeg decoder name: "vp8" (native) or "libvpx"
    threads: int = 1
    reorder_window: int = 128  # packets held behind a missing one ...
    reorder_wait_s: float = 0.1  # ... for at most this long (a retransmission's round trip)
    keyframe_retry_frames: int = 15  # still no keyframe after this many dropped frames: ask again
    queue_frames: int = 2  # decoded frames kept for a slow reader (the newest)
    backlog_frames: int = 10  # frames waiting for a busy worker before they are dropped

    def __post_init__(self) -> None:
        if self.codec not in ("vp8", "libvpx"):
            raise ValueError(f"codec must be vp8 or libvpx, got {self.codec!r}")
        counts = (self.threads, self.queue_frames, self.keyframe_retry_frames, self.backlog_frames)
        if min(counts) < 1:
            raise ValueError(
                "threads, queue_frames, keyframe_retry_frames and backlog_frames must be positive"
            )
        if self.reorder_window < 0 or self.reorder_wait_s < 0:
            raise ValueError("reorder_window and reorder_wait_s must not be negative")


@dataclass(slots=True)
class DecoderStats:
    """Counters for metrics, tests and the benchmark."""

    packets: int = 0
    frames_assembled: int = 0
    frames_decoded: int = 0
    frames_dropped_broken: int = 0  # incomplete, or undecodable until the next keyframe
    decode_errors: int = 0
    keyframe_requests: int = 0
    frames_dropped: int = 0  # decoded but replaced in the track's queue by newer ones
    frames_dropped_backlog: int = 0  # never decoded: the worker was too far behind


class DecodedVideoTrack(MediaStreamTrack):
    """A remote feed's decoded pictures (``recv`` yields :class:`av.VideoFrame`).

    A consumer that can take frames in the decoding thread (the wall's
    :class:`~bridge.feeds.FeedReader`) may :meth:`attach` itself: frames then go to it
    directly, without a hop through the event loop, and :meth:`recv` only reports the end.
    """

    kind = "video"

    def __init__(self, queue_frames: int = 2) -> None:
        super().__init__()
        self._queue: asyncio.Queue[av.VideoFrame | None] = asyncio.Queue()
        self._limit = queue_frames
        self._consumer: Callable[[av.VideoFrame], None] | None = None
        self.dropped = 0

    @property
    def consumer(self) -> Callable[[av.VideoFrame], None] | None:
        return self._consumer

    def attach(self, consumer: Callable[[av.VideoFrame], None] | None) -> None:
        """Hand every later frame to ``consumer`` in the decoding thread (it must be
        thread-safe and quick, and never raise); None: queue them for :meth:`recv` again."""
        self._consumer = consumer

    def deliver(self, frame: av.VideoFrame | None) -> None:
        """Queue a frame (None: the track ends); keeps the newest ``queue_frames``."""
        if frame is not None:
            while self._queue.qsize() >= self._limit:
                self._queue.get_nowait()
                self.dropped += 1
        self._queue.put_nowait(frame)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live" and self._queue.empty():
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


class _Port:
    """The decoder's :class:`~bridge.slot.DownstreamPort`: packets go to the depacketiser."""

    def __init__(self, decoder: VideoDecoder) -> None:
        self._decoder = decoder
        self.ssrc = 0
        self.ready = True

    async def send(self, sequence_number: int, data: bytes, payload_size: int) -> None:
        self._decoder._on_packet(data)

    def close(self) -> None:
        self.ready = False


class _Work(NamedTuple):
    """One assembled frame for the worker (``data`` None: the decoder closed)."""

    data: bytes | None
    keyframe: bool
    timestamp: int
    epoch: int


class VideoDecoder:
    """Decodes one VP8 publication while started (see the module docstring).

    Lives on the event loop (:meth:`start`, :meth:`stop`, :meth:`close`); decoding runs in
    a worker of ``pool`` (shared with other decoders; without one, the decoder has a
    one-thread pool of its own). The :attr:`track` lives until :meth:`close`, across stops
    and starts, like a remote track lives as long as its connection.
    """

    def __init__(
        self,
        name: str,
        *,
        config: DecoderConfig | None = None,
        relay_config: RelayConfig | None = None,
        pool: DecodePool | None = None,
    ) -> None:
        self.name = name
        self.config = config or DecoderConfig()
        self.stats = DecoderStats()
        self.track = DecodedVideoTrack(self.config.queue_frames)
        self._relay_config = relay_config
        self._slot: Slot | None = None
        self._reorder = self._new_reorder()
        self._depacketizer = Vp8Depacketizer()
        self._dropped_at_request = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._own_pool = pool is None
        self.pool = pool or DecodePool(1, spill_workers=0, name=f"decode-{name}")
        self._work = self.pool.strand(self._decode, name)
        self._epoch = 0  # bumped on every start and stop: frames of an older run are dropped
        # worker state (one worker at a time per decoder, so no lock)
        self._codec: VideoCodecContext | None = None
        self._broken = False  # a decode failed: skip to the next keyframe
        self._worker_epoch = -1
        self.closed = False

    def __repr__(self) -> str:
        return f"VideoDecoder({self.name!r})"

    @property
    def running(self) -> bool:
        return self._slot is not None

    @property
    def thread_ids(self) -> tuple[int, ...]:
        """The native ids of the pool's worker threads (for per-thread CPU accounting)."""
        return self.pool.thread_ids

    def start(self, publication: Publication) -> None:
        """Decode ``publication`` from its next keyframe on (asked for at once)."""
        if self.closed:
            raise RuntimeError(f"{self!r} is closed")
        slot = self._slot
        if slot is not None and publication in (slot.source, slot.pending):
            return
        self.stop()
        self._loop = asyncio.get_running_loop()
        self._epoch += 1
        self._reorder = self._new_reorder()
        self._depacketizer = Vp8Depacketizer()
        self._dropped_at_request = 0
        slot = Slot(f"{self.name}/decoder", "video", config=self._relay_config)
        slot.connect(
            _Port(self),
            StreamRewriter(
                ssrc=0,
                payload_type=96,
                clock_rate=90000,
                vp8=False,
                extension_ids={},
                mid=None,
                initial_sequence=0,
                initial_timestamp=0,
            ),
        )
        self._slot = slot
        slot.switch(publication)

    def stop(self) -> None:
        """Stop decoding (idempotent); the track stays open."""
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.close()
            self._epoch += 1
            self._work.clear()

    def close(self) -> None:
        """Stop for good: the track ends once the worker is done with this decoder
        (idempotent). Close decoders before the pool they share."""
        if self.closed:
            return
        self.stop()
        self.closed = True
        if self.pool.closed or self._loop is None:  # nothing decoded, or nothing would run
            self._work.close()
            if self._own_pool:
                self.pool.close()
            self.track.deliver(None)
            return
        self._work.put(_Work(None, False, 0, self._epoch))

    # -- packets (event loop) ---------------------------------------------------------------

    def _new_reorder(self) -> ReorderBuffer:
        return ReorderBuffer(self.config.reorder_window, self.config.reorder_wait_s)

    def _on_packet(self, data: bytes) -> None:
        try:
            packet = parse_rtp(data, {})
        except ValueError:
            return
        self.stats.packets += 1
        depacketizer = self._depacketizer
        waiting = depacketizer.waiting_keyframe
        work = self._work
        dropping = False
        for ordered in self._reorder.push(packet, time.monotonic()):
            for frame in depacketizer.push(ordered):
                self.stats.frames_assembled += 1
                if work.pending >= self.config.backlog_frames:
                    # the worker is too far behind: waiting frames would only add delay
                    self.stats.frames_dropped_backlog += work.clear()
                    if not frame.keyframe:
                        depacketizer.need_keyframe()
                        dropping = True
                if dropping:
                    if not frame.keyframe:
                        self.stats.frames_dropped_backlog += 1
                        continue
                    dropping = depacketizer.waiting_keyframe = False
                work.put(_Work(frame.data, frame.keyframe, frame.timestamp, self._epoch))
        self.stats.frames_dropped_broken = depacketizer.dropped
        if depacketizer.waiting_keyframe and (
            not waiting
            or depacketizer.dropped - self._dropped_at_request >= self.config.keyframe_retry_frames
        ):
            self._dropped_at_request = depacketizer.dropped
            self._request_keyframe()

    def _request_keyframe(self) -> None:
        self.stats.keyframe_requests += 1
        if self._slot is not None:
            self._slot.request_keyframe()

    # -- decoding (a worker thread of the pool) ---------------------------------------------

    def _open(self) -> VideoCodecContext:
        codec = CodecContext.create(self.config.codec, "r")
        assert isinstance(codec, VideoCodecContext)
        codec.thread_count = self.config.threads
        return codec

    def _decode(self, work: _Work) -> None:
        if work.data is None:  # closed: free the codec, end the track
            self._codec = None
            self._work.close()
            if self._own_pool:
                self.pool.close()
            self._call_soon(self.track.deliver, None)
            return
        epoch = work.epoch
        if epoch != self._epoch:
            return  # queued before a stop
        if epoch != self._worker_epoch:  # a new start: a new reference chain from a keyframe
            self._worker_epoch, self._broken = epoch, False
        if self._broken and not work.keyframe:
            return
        try:
            codec = self._codec
            if codec is None:
                codec = self._codec = self._open()
            frames = codec.decode(av.Packet(work.data))
        except Exception as exc:
            self._codec, self._broken = None, True
            self.stats.decode_errors += 1
            logger.warning("%r: cannot decode a frame: %s", self, exc)
            self._call_soon(self._request_keyframe)
            return
        self._broken = False
        for frame in frames:
            frame.pts = work.timestamp
            frame.time_base = VIDEO_TIME_BASE
            self.stats.frames_decoded += 1
            consumer = self.track.consumer
            if consumer is None:
                self._call_soon(self._deliver, frame, epoch)
            elif epoch == self._epoch and not self.closed:
                consumer(frame)

    def _call_soon(self, callback: object, *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(callback, *args)  # type: ignore[arg-type]

    def _deliver(self, frame: av.VideoFrame, epoch: int) -> None:
        if epoch != self._epoch or self.closed:
            return  # decoded for a run that was stopped since
        before = self.track.dropped
        self.track.deliver(frame)
        self.stats.frames_dropped += self.track.dropped - before
