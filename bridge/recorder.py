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
2. Depacketising. VP8, RFC 7741: the payload descriptor (section 4.2) is stripped and the
   payloads of one frame (one RTP timestamp, all partitions in order) are joined until the
   marker bit (section 4.1); a frame whose first packet starts partition 0 (S=1, PID=0) with
   the payload header's P bit 0 (section 4.3) is a keyframe. Opus, RFC 7587 section 4.2: one
   RTP payload is one Opus packet.
3. Loss. A sequence gap (or a malformed packet: truncated descriptor, empty payload) drops the
   frame it hit, and every later video frame until the next keyframe, which is asked for at
   once and again every ``keyframe_retry_s`` (:meth:`Slot.request_keyframe`, coalesced at the
   publication). A stream that starts without a keyframe is handled the same way (the slot
   itself already waits for one when it switches). Late and duplicate packets are ignored.
   Lost audio packets leave a gap in the audio track's timestamps (players play silence).
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
then with ``video_size``); audio that came first waits for it in the queue. Streams are made
from codec parameters only (:func:`_stream_templates`): no encoder is ever opened. Playable
after a crash: Matroska written live keeps its segment size "unknown" until the trailer and is
read without cues, and the muxer is told to close a cluster at least every ``cluster_ms``
and to flush every packet to the file (``flush_packets``), so a ``SIGKILL`` loses at most
the last cluster (``tests/test_recording.py`` kills a recorder and decodes what it left).
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

from .relay import Relay
from .rtp import RtpPacket, StreamRewriter, parse_rtp, parse_vp8_descriptor, seq_newer
from .slot import Slot

__all__ = [
    "MediaFrame",
    "OpusDepacketizer",
    "Recorder",
    "RecorderConfig",
    "RecorderStats",
    "Recording",
    "Timeline",
    "Vp8Depacketizer",
    "vp8_frame_size",
]

logger = logging.getLogger(__name__)

#: Matroska's usual time base: milliseconds.
_MS: Final = fractions.Fraction(1, 1000)
_VIDEO_CLOCK: Final = 90000  # RFC 7741 4.1
_AUDIO_CLOCK: Final = 48000  # RFC 7587 4.1
#: VP8 keyframe start code (RFC 6386 9.1), after the 3-byte frame tag.
_VP8_START_CODE: Final = b"\x9d\x01\x2a"


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

    def __post_init__(self) -> None:
        if self.queue_frames < 16:
            raise ValueError(f"queue_frames must be at least 16, got {self.queue_frames}")
        if self.header_wait_s < 0 or self.keyframe_retry_s <= 0 or self.max_drift_s <= 0:
            raise ValueError("header_wait_s, keyframe_retry_s and max_drift_s must be positive")
        if self.close_timeout_s <= 0:
            raise ValueError("close_timeout_s must be positive")
        width, height = self.video_size
        if not (16 <= width <= 16383 and 16 <= height <= 16383):
            raise ValueError(f"video_size must lie in 16..16383 (VP8), got {self.video_size}")
        if not 100 <= self.cluster_ms <= 30000:
            raise ValueError(f"cluster_ms must lie in 100..30000, got {self.cluster_ms}")


@dataclass(frozen=True, slots=True)
class MediaFrame:
    """One depacketised frame: a whole VP8 frame or one Opus packet, with its RTP timestamp."""

    data: bytes
    timestamp: int
    keyframe: bool


def vp8_frame_size(frame: bytes) -> tuple[int, int] | None:
    """The width and height a VP8 keyframe states (RFC 6386 9.1); None for other frames."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != _VP8_START_CODE:
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


class Vp8Depacketizer:
    """RTP payloads of one VP8 stream → whole frames (RFC 7741), dropping what loss broke.

    :meth:`push` returns the frames a packet completed: usually none or one; two when a sender
    that sets no marker bits starts a frame right after one that ended with a one-packet frame.
    After a loss, frames are dropped until the next keyframe (:attr:`waiting_keyframe`).
    """

    def __init__(self, max_frame_bytes: int = 4_000_000) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.waiting_keyframe = True
        self.frames = 0
        self.keyframes = 0
        self.dropped = 0  # frames thrown away: incomplete, or not decodable without a keyframe
        self.gaps = 0
        self.malformed = 0
        self.late = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._timestamp: int | None = None  # of the frame in progress
        self._keyframe = False
        self._broken = False
        self._next_seq: int | None = None

    def need_keyframe(self) -> None:
        """A frame was lost downstream (a full queue): drop until the next keyframe."""
        self.waiting_keyframe = True

    def push(self, packet: RtpPacket) -> list[MediaFrame]:
        out: list[MediaFrame] = []
        seq = packet.sequence_number
        if self._next_seq is not None and seq != self._next_seq:
            if not seq_newer(seq, self._next_seq):
                self.late += 1  # a duplicate or a packet behind what was already taken
                return out
            self.gaps += 1
            self._lose()
        self._next_seq = (seq + 1) & 0xFFFF
        try:
            desc = parse_vp8_descriptor(packet.payload)
        except ValueError:
            self.malformed += 1
            self._lose()
            return out
        body = packet.payload[desc.size :]
        if desc.start and desc.partition_id == 0:
            if self._timestamp is not None:
                # the previous frame never saw its marker: complete if nothing was lost
                self._finish(out)
            if not body:
                self.malformed += 1
                self._lose()
                return out
            self._timestamp = packet.timestamp
            self._keyframe = not body[0] & 0x01  # P bit: 0 = keyframe (RFC 7741 4.3)
            self._broken = False
            self._parts = [body]
            self._size = len(body)
        elif self._timestamp is None or packet.timestamp != self._timestamp:
            # the middle of a frame whose start we never saw: nothing to build on
            if self._timestamp is not None:
                self._finish(out)
            self._timestamp = packet.timestamp
            self._broken = True
            self._parts, self._size = [], 0
        else:
            self._parts.append(body)
            self._size += len(body)
            if self._size > self.max_frame_bytes:
                self._broken = True
                self._parts, self._size = [], 0
        if packet.marker:
            self._finish(out)
        return out

    def _lose(self) -> None:
        if self._timestamp is not None:
            self._broken = True
        self.waiting_keyframe = True

    def _finish(self, out: list[MediaFrame]) -> None:
        parts, broken, keyframe = self._parts, self._broken, self._keyframe
        timestamp = self._timestamp
        self._parts, self._size, self._timestamp, self._broken = [], 0, None, False
        if broken or not parts or timestamp is None:
            self.dropped += 1
            self.waiting_keyframe = True
            return
        if self.waiting_keyframe and not keyframe:
            self.dropped += 1
            return
        self.waiting_keyframe = False
        self.frames += 1
        self.keyframes += keyframe
        out.append(MediaFrame(b"".join(parts), timestamp, keyframe))


class OpusDepacketizer:
    """RTP payloads of one Opus stream → Opus packets (RFC 7587 4.2: one per payload)."""

    def __init__(self) -> None:
        self.frames = 0
        self.gaps = 0
        self.malformed = 0
        self.late = 0
        self._next_seq: int | None = None

    def push(self, packet: RtpPacket) -> list[MediaFrame]:
        seq = packet.sequence_number
        if self._next_seq is not None and seq != self._next_seq:
            if not seq_newer(seq, self._next_seq):
                self.late += 1
                return []
            self.gaps += 1
        self._next_seq = (seq + 1) & 0xFFFF
        if not packet.payload:
            self.malformed += 1
            return []
        self.frames += 1
        return [MediaFrame(packet.payload, packet.timestamp, True)]


class Timeline:
    """One track's RTP timestamps → strictly increasing milliseconds of the recording.

    Anchored at the arrival of the track's first frame (``arrival_ms``, relative to the
    recording's first frame); then follows the unwrapped RTP clock (RFC 3550 5.1), re-anchoring
    on arrival when the two disagree by more than ``max_drift_ms``.
    """

    def __init__(self, clock_rate: int, max_drift_ms: float) -> None:
        self.clock_rate = clock_rate
        self.max_drift_ms = max_drift_ms
        self.last_pts = -1
        self.reanchored = 0
        self._last_ts: int | None = None
        self._ext = 0
        self._base_ext = 0
        self._base_ms = 0.0

    def pts(self, timestamp: int, arrival_ms: float) -> int:
        if self._last_ts is None:
            self._ext = self._base_ext = timestamp
            self._base_ms = arrival_ms
        else:
            delta = (timestamp - self._last_ts) & 0xFFFFFFFF
            self._ext += delta - (1 << 32) if delta >= 1 << 31 else delta
        self._last_ts = timestamp
        pts = self._base_ms + (self._ext - self._base_ext) * 1000 / self.clock_rate
        if abs(pts - arrival_ms) > self.max_drift_ms:
            self.reanchored += 1
            self._base_ext, self._base_ms, pts = self._ext, arrival_ms, arrival_ms
        whole = max(round(pts), self.last_pts + 1)
        self.last_pts = whole
        return whole


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
        if packet is None:
            return
        for frame in self.vp8.push(packet):
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
        if packet is None:
            return
        for frame in self.opus.push(packet):
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
