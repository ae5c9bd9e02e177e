"""The recorder: one programme (or wall output) and its audio to a WebM file, no re-encoding.

ARCHITECTURE.md, "Gateways": the recorder looks like an ordinary subscriber to the relay. A
:class:`Recorder` owns two relay :class:`~bridge.slot.Slot`\\ s (``<id>/video``,
``<id>/audio``) connected to its own :class:`~bridge.slot.DownstreamPort`\\ s; whoever drives it
(``web.recording``) routes them like any subscriber's slots, so the relay's switching, keyframe
requests (PLI) and sequence / timestamp rewriting all apply: a switch of the floor reaches the
recorder as one continuous stream that starts at a keyframe.

What happens to a packet (all on the event loop, synchronous, no await):

1. The slot's :class:`~bridge.rtp.StreamRewriter` hands the port a serialised RTP packet; it is
   parsed again (:func:`~bridge.rtp.parse_rtp`) — the price of reusing the relay unchanged.
2. Depacketising (:mod:`bridge.depacketizer`): VP8 per RFC 7741 (descriptor stripped, the
   partitions of one frame joined until the marker bit, keyframe = P bit 0 on the first
   partition), Opus per RFC 7587 (one RTP payload = one Opus packet).
3. Loss. Packets are first put back in order (:class:`~bridge.depacketizer.ReorderBuffer`):
   a missing one is waited for up to ``reorder_wait_s`` (its retransmission, RFC 4588, may
   still come: a recording has no deadline). Then a sequence gap (or a malformed packet:
   truncated descriptor, empty payload) drops the frame it hit, and every later video frame
   until the next keyframe, which is asked for at once and again every ``keyframe_retry_s``
   (:meth:`Slot.request_keyframe`, coalesced at the publication). A stream that starts
   without a keyframe is handled the same way (the slot itself already waits for one when it
   switches). Late and duplicate packets are ignored. Lost audio packets leave a gap in the
   audio track's timestamps (players play silence).
4. Time. Each track's RTP timestamps (90 kHz, 48 kHz; unwrapped, RFC 3550 5.1) become
   milliseconds (the Matroska time base) from the moment its first frame arrived, relative to
   the first frame of the recording; so audio and video line up as they arrived (lip sync to
   within the network's jitter, without sender reports). The relay keeps each slot's timestamps
   continuous across source switches; should they still jump by more than ``max_drift_s`` from
   the arrival clock, the track re-anchors on arrival. Timestamps within a track only go up.
5. The frame goes into a bounded queue (``queue_frames``) for the writer thread; a full queue
   (the disk stalls) drops the frame and counts it, never blocks the relay; a dropped video
   frame means waiting for the next keyframe.

The writer thread owns the PyAV container (WebM = Matroska with VP8 + Opus). The file header
is written once the first video keyframe tells the picture size (``header_wait_s`` at most:
then with ``video_size``); audio that came first waits for it. A recording that caught no
media leaves no file. Streams are made from codec parameters only (:func:`_stream_templates`):
no encoder is ever opened. Python, not FFmpeg, opens and writes the file (unbuffered): PyAV
holds the GIL while FFmpeg opens a file and writes its header and trailer, so a hung disk there
would stall the event loop; Python's I/O lets go of the GIL in every system call
(``tests/test_recording.py`` records into a FIFO nobody reads). :meth:`Recorder.stop` waits
``close_timeout_s`` at most for the file to close.

Playable after a crash: Matroska keeps its segment size "unknown" until the trailer and is
read without cues; the muxer closes a cluster at least every ``cluster_ms`` and flushes every
packet (``flush_packets``) straight to the file, so a ``SIGKILL`` loses at most the last
cluster (``tests/test_recording.py`` kills a recording process and decodes what it left).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import io
import logging
import queue
import random
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import av
from av.container import OutputContainer

from .depacketizer import (
    OpusDepacketizer,
    ReorderBuffer,
    Timeline,
    Vp8Depacketizer,
    vp8_frame_size,
)
from .relay import Relay
from .rtp import RtpPacket, StreamRewriter, parse_rtp
from .slot import Slot

__all__ = ["Recorder", "RecorderConfig", "RecorderStats", "Recording"]

logger = logging.getLogger(__name__)

#: Matroska's usual time base: milliseconds.
_MS: Final = fractions.Fraction(1, 1000)
_VIDEO_CLOCK: Final = 90000  # RFC 7741 4.1
_AUDIO_CLOCK: Final = 48000  # RFC 7587 4.1


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """How a recording is written (owned by :mod:`bridge`; the composition root may override).

    - ``container_format``: the PyAV/FFmpeg muxer (``webm``: VP8 + Opus, plays in browsers;
      ``matroska`` for ``.mkv``).
    - ``queue_frames``: frames waiting for the writer thread; beyond, frames are dropped.
    - ``header_wait_s``: how long the header waits for a video keyframe to learn its size.
    - ``video_size``: the size the header states when no keyframe came in time (decoders use
      the size each keyframe carries anyway).
    - ``keyframe_retry_s``: while a video track waits for a keyframe, ask again this often.
    - ``max_drift_s``: a track whose timestamps stray this far from the arrival clock
      re-anchors on arrival.
    - ``cluster_ms``: longest Matroska cluster, i.e. the most a crash can lose.
    - ``max_frame_bytes``: a frame growing past this is dropped (a sender without marker bits).
    - ``reorder_wait_s`` / ``reorder_packets``: how long (and for how many later packets) a
      missing packet is waited for (a retransmission, RFC 4588) before it counts as lost: a
      recording has no deadline, so it waits rather than drop frames; a loss then costs the
      frames until the next keyframe, asked for that much later.
    - ``close_timeout_s``: :meth:`Recorder.stop` waits this long for the writer to close the
      file (a stalled disk); then it gives up on the file and returns.
    """

    container_format: str = "webm"
    queue_frames: int = 1024
    header_wait_s: float = 2.0
    video_size: tuple[int, int] = (1280, 720)
    keyframe_retry_s: float = 1.0
    max_drift_s: float = 5.0
    cluster_ms: int = 1000
    max_frame_bytes: int = 4_000_000
    close_timeout_s: float = 30.0
    reorder_wait_s: float = 0.3
    reorder_packets: int = 512

    def __post_init__(self) -> None:
        if self.queue_frames < 16:
            raise ValueError(f"queue_frames must be at least 16, got {self.queue_frames}")
        if self.reorder_wait_s < 0 or self.reorder_packets < 0:
            raise ValueError("reorder_wait_s and reorder_packets must not be negative")
        if self.header_wait_s < 0 or self.keyframe_retry_s <= 0 or self.max_drift_s <= 0:
            raise ValueError("header_wait_s, keyframe_retry_s and max_drift_s must be positive")
        if self.close_timeout_s <= 0:
            raise ValueError("close_timeout_s must be positive")
        width, height = self.video_size
        if not (16 <= width <= 16383 and 16 <= height <= 16383):
            raise ValueError(f"video_size must lie in 16..16383 (VP8), got {self.video_size}")
        if not 100 <= self.cluster_ms <= 30000:
            raise ValueError(f"cluster_ms must lie in 100..30000, got {self.cluster_ms}")


@dataclass(slots=True)
class RecorderStats:
    """Counters for the index, metrics, tests and the benchmark."""

    video_frames: int = 0  # handed to the writer
    audio_frames: int = 0
    keyframes: int = 0
    queue_dropped: int = 0  # frames dropped because the writer's queue was full
    keyframe_requests: int = 0
    malformed: int = 0  # packets that did not parse as RTP
    muxed: int = 0  # written by the writer thread
    octets: int = 0
    errors: int = 0  # writer failures (the file stops growing after the first)
    write_s: float = 0.0  # CPU seconds in the writer thread


@dataclass(frozen=True, slots=True)
class Recording:
    """A finished recording: what the index stores."""

    path: Path
    started_at: float  # POSIX time of start()
    ended_at: float  # POSIX time of stop()
    size: int  # bytes on disk
    duration_s: float  # the media's own duration (last timestamp of either track)
    video_frames: int
    audio_frames: int
    video_size: tuple[int, int] | None
    errors: int = 0


class _TapPort:
    """A :class:`~bridge.slot.DownstreamPort` that hands each packet to the recorder."""

    def __init__(self, on_packet: Callable[[bytes], None]) -> None:
        self._ssrc = random.getrandbits(32)
        self._on_packet = on_packet
        self.open = False

    @property
    def ssrc(self) -> int:
        return self._ssrc

    @property
    def ready(self) -> bool:
        return self.open

    async def send(self, sequence_number: int, data: bytes, payload_size: int) -> None:
        if self.open:
            self._on_packet(data)

    def close(self) -> None:
        self.open = False


@dataclass(frozen=True, slots=True)
class _Header:
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class _Packet:
    video: bool
    data: bytes
    pts: int
    keyframe: bool


_END: Final = object()


class Recorder:
    """Records what its two slots carry into ``path`` (see the module docstring).

    ``relay`` makes the slots (``<recorder_id>/video`` and ``/audio``); route them, then
    :meth:`start`; :meth:`stop` removes them from the relay and closes the file. One recorder
    records one file.
    """

    def __init__(
        self,
        path: Path,
        relay: Relay,
        *,
        recorder_id: str = "recorder",
        config: RecorderConfig | None = None,
        video_size: tuple[int, int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.id = recorder_id
        self.config = config or RecorderConfig()
        self.relay = relay
        self.stats = RecorderStats()
        self._clock = clock
        self._wall_clock = wall_clock
        self._default_size = video_size or self.config.video_size
        self.video_size: tuple[int, int] | None = None  # stated in the header
        self.vp8 = Vp8Depacketizer(self.config.max_frame_bytes)
        self.opus = OpusDepacketizer()
        reorder = (self.config.reorder_packets, self.config.reorder_wait_s)
        self.video_order = ReorderBuffer(*reorder)
        self.audio_order = ReorderBuffer(*reorder)
        max_drift_ms = self.config.max_drift_s * 1000
        self._video_time = Timeline(_VIDEO_CLOCK, max_drift_ms)
        self._audio_time = Timeline(_AUDIO_CLOCK, max_drift_ms)
        self._t0: float | None = None
        self._last_keyframe_request: float | None = None
        self._header_written = False
        self._header_due = False  # header_wait_s passed: the next frame writes it
        self._header_timer: asyncio.TimerHandle | None = None
        self._pending: list[_Packet] = []  # frames before the header (audio), bounded
        self._queue: queue.Queue[object] = queue.Queue(self.config.queue_frames)
        self._thread: threading.Thread | None = None
        self._container: OutputContainer | None = None
        self._file: io.RawIOBase | None = None
        self._stopping: asyncio.Future[Recording] | None = None
        self.started_at: float | None = None
        self._video_port = _TapPort(self._on_video)
        self._audio_port = _TapPort(self._on_audio)
        self.video_slot: Slot = relay.create_slot(f"{recorder_id}/video", "video")
        self.audio_slot: Slot = relay.create_slot(f"{recorder_id}/audio", "audio")
        self.video_slot.connect(self._video_port, _rewriter(self._video_port.ssrc, video=True))
        self.audio_slot.connect(self._audio_port, _rewriter(self._audio_port.ssrc, video=False))

    def __repr__(self) -> str:
        return f"Recorder({self.id!r}, {str(self.path)!r})"

    @property
    def recording(self) -> bool:
        return self._thread is not None and self._stopping is None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start taking packets (the file is created when the header is due)."""
        if self._thread is not None:
            raise RuntimeError(f"{self!r} was already started")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = self._wall_clock()
        self._thread = threading.Thread(
            target=self._write_loop, name=f"recorder-{self.id}", daemon=True
        )
        self._thread.start()
        self._video_port.open = self._audio_port.open = True
        self.video_slot.port_ready()  # a switch already waiting asks for its keyframe now
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self.config.header_wait_s, self._header_wait_over)

    async def stop(self) -> Recording:
        """Stop, close the file cleanly and describe it (idempotent: the same result)."""
        if self._stopping is not None:
            return await asyncio.shield(self._stopping)
        loop = asyncio.get_running_loop()
        self._stopping = loop.create_future()
        try:
            result = await self._stop(loop)
        except BaseException as exc:
            self._stopping.set_exception(exc)
            raise
        self._stopping.set_result(result)
        return result

    async def _stop(self, loop: asyncio.AbstractEventLoop) -> Recording:
        self._video_port.open = self._audio_port.open = False
        self.relay.remove_slot(self.video_slot)
        self.relay.remove_slot(self.audio_slot)
        ended_at = self._wall_clock()
        self._take_video(self.video_order.flush())
        self._take_audio(self.audio_order.flush())
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._thread is not None:
            if not self._header_written and self._pending:
                self._write_header()
            try:
                await asyncio.wait_for(self._finish_writing(loop), self.config.close_timeout_s)
            except TimeoutError:
                self.stats.errors += 1
                logger.error(
                    "recording %s: the file did not close within %.0f s (disk stalled?)",
                    self.path,
                    self.config.close_timeout_s,
                )
        size = self.path.stat().st_size if self.path.exists() else 0
        last = max(self._video_time.last_pts, self._audio_time.last_pts)
        return Recording(
            path=self.path,
            started_at=self.started_at if self.started_at is not None else ended_at,
            ended_at=ended_at,
            size=size,
            duration_s=max(0, last) / 1000,
            video_frames=self.stats.video_frames,
            audio_frames=self.stats.audio_frames,
            video_size=self.video_size,
            errors=self.stats.errors,
        )

    async def _finish_writing(self, loop: asyncio.AbstractEventLoop) -> None:
        thread = self._thread
        assert thread is not None
        await loop.run_in_executor(None, self._queue.put, _END)
        await loop.run_in_executor(None, thread.join)

    # -- packets (event loop) ---------------------------------------------------------------

    def _parse(self, data: bytes) -> RtpPacket | None:
        try:
            return parse_rtp(data, {})
        except ValueError:
            self.stats.malformed += 1
            return None

    def _arrival_ms(self) -> float:
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        return (now - self._t0) * 1000

    def _on_video(self, data: bytes) -> None:
        packet = self._parse(data)
        if packet is not None:
            self._take_video(self.video_order.push(packet, self._clock()))

    def _take_video(self, packets: list[RtpPacket]) -> None:
        frames = [frame for packet in packets for frame in self.vp8.push(packet)]
        for frame in frames:
            if not self._header_written:
                size = vp8_frame_size(frame.data) if frame.keyframe else None
                if size is not None:
                    self._write_header(size)
            pts = self._video_time.pts(frame.timestamp, self._arrival_ms())
            if self._enqueue(_Packet(True, frame.data, pts, frame.keyframe)):
                self.stats.video_frames += 1
                self.stats.keyframes += frame.keyframe
            else:
                self.vp8.need_keyframe()
        if self.vp8.waiting_keyframe:
            self._ask_keyframe()

    def _on_audio(self, data: bytes) -> None:
        packet = self._parse(data)
        if packet is not None:
            self._take_audio(self.audio_order.push(packet, self._clock()))

    def _take_audio(self, packets: list[RtpPacket]) -> None:
        frames = [frame for packet in packets for frame in self.opus.push(packet)]
        for frame in frames:
            pts = self._audio_time.pts(frame.timestamp, self._arrival_ms())
            if self._enqueue(_Packet(False, frame.data, pts, True)):
                self.stats.audio_frames += 1

    def _ask_keyframe(self) -> None:
        now = self._clock()
        last = self._last_keyframe_request
        if last is None or now - last >= self.config.keyframe_retry_s:
            self._last_keyframe_request = now
            self.stats.keyframe_requests += 1
            self.video_slot.request_keyframe()

    def _header_wait_over(self) -> None:
        self._header_timer = None
        self._header_due = True
        if self._pending:
            self._write_header()

    def _enqueue(self, item: _Packet) -> bool:
        if not self._header_written and self._header_due:
            self._write_header()
        if not self._header_written:
            if len(self._pending) >= self.config.queue_frames:
                self.stats.queue_dropped += 1
                return False
            self._pending.append(item)
            return True
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.queue_dropped += 1
            return False
        return True

    def _write_header(self, size: tuple[int, int] | None = None) -> None:
        """Queue the header (with the first keyframe's size, else the default), then the
        frames that waited for it."""
        if self._header_written:
            return
        self._header_written = True
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self.video_size = size or self._default_size
        pending, self._pending = self._pending, []
        for item in (_Header(*self.video_size), *pending):
            try:
                self._queue.put_nowait(item)
            except queue.Full:  # only frames can miss out: the queue is empty before this
                self.stats.queue_dropped += 1

    # -- the writer thread --------------------------------------------------------------------

    def _write_loop(self) -> None:
        failed = False
        streams: tuple[Any, Any] | None = None
        while True:
            item = self._queue.get()
            if item is _END:
                break
            if failed:
                continue
            started = time.thread_time()
            try:
                if isinstance(item, _Header):
                    streams = self._open(item)
                elif isinstance(item, _Packet) and streams is not None:
                    packet = av.Packet(item.data)
                    packet.stream = streams[0] if item.video else streams[1]
                    packet.time_base = _MS
                    packet.pts = packet.dts = item.pts
                    packet.is_keyframe = item.keyframe
                    assert self._container is not None
                    self._container.mux(packet)
                    self.stats.muxed += 1
                    self.stats.octets += len(item.data)
            except Exception:
                failed = True
                self.stats.errors += 1
                logger.exception("recording %s: writing failed; the file stops here", self.path)
            self.stats.write_s += time.thread_time() - started
        if self._container is not None:
            container, self._container = self._container, None
            try:
                container.close()
            except Exception:
                self.stats.errors += 1
                logger.exception("recording %s: closing the file failed", self.path)
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            if not self.stats.muxed:  # a header alone is no file a player opens
                with contextlib.suppress(OSError):
                    self.path.unlink()

    def _open(self, header: _Header) -> tuple[Any, Any]:
        config = self.config
        # Python opens and writes the file (unbuffered), not FFmpeg: PyAV holds the GIL while
        # FFmpeg opens a file and writes the header and trailer, so a hung disk there would
        # stall the event loop too; Python's I/O lets go of the GIL in every system call.
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115  # closed by _write_loop
        container = av.open(
            self._file,
            "w",
            format=config.container_format,
            container_options={
                "cluster_time_limit": str(config.cluster_ms),
                "flush_packets": "1",
                "max_interleave_delta": str(config.cluster_ms * 1000),
            },
        )
        try:
            video_template, audio_template = _stream_templates()
            video = container.add_stream_from_template(video_template)
            audio = container.add_stream_from_template(audio_template, opaque=False)
            video.codec_context.width = header.width
            video.codec_context.height = header.height
            audio.codec_context.extradata = _opus_head(channels=2)
            video.time_base = audio.time_base = _MS
            container.metadata["title"] = self.path.stem
            container.start_encoding()
        except BaseException:
            with contextlib.suppress(Exception):
                container.close()
            self._file.close()
            raise
        self._container = container
        logger.info("recording %s: %dx%d", self.path, header.width, header.height)
        return video, audio


def _rewriter(ssrc: int, *, video: bool) -> StreamRewriter:
    return StreamRewriter(
        ssrc=ssrc,
        payload_type=96 if video else 111,
        clock_rate=_VIDEO_CLOCK if video else _AUDIO_CLOCK,
        vp8=video,
        extension_ids={},
        mid=None,
        initial_sequence=random.getrandbits(16),
        initial_timestamp=random.getrandbits(32),
    )


def _opus_head(channels: int) -> bytes:
    """The Opus identification header (RFC 7845 5.1) Matroska carries as CodecPrivate.

    Pre-skip 0: the recording starts in the middle of a live stream, so there are no encoder
    priming samples to skip; output gain 0; channel mapping family 0 (mono or stereo). Opus
    decodes any packet (mono or stereo) to the stated channel count.
    """
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 0, _AUDIO_CLOCK, 0, 0)


def _stream_templates() -> tuple[Any, Any]:
    """VP8 and Opus stream templates: codec parameters without an opened encoder.

    PyAV's ``add_stream`` opens an encoder when the header is written (libvpx at 1080p costs
    ~50 ms and ~55 MB); ``add_stream_from_template`` only copies codec parameters. The
    templates are streams of a throwaway in-memory container that is never written.
    """
    dummy = av.open(io.BytesIO(), "w", format="matroska")
    video = dummy.add_stream("libvpx", rate=30)
    audio = dummy.add_stream("libopus", rate=_AUDIO_CLOCK, layout="stereo")
    return video, audio
