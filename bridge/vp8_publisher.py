"""Decoded frames in, one VP8 publication out: the edge transcoder of the gateways.

ARCHITECTURE.md, bridge/: sources in other codecs (an H.264 RTSP camera, an H.264 WHIP push)
are transcoded **once** at the edge, never per subscriber. A :class:`Vp8Publisher` owns a
local :class:`~bridge.publication.Publication` and feeds it RTP, so the relay's slots switch
to it, rewrite it and answer NACKs exactly as for a browser's camera::

    publisher = Vp8Publisher("tianhe.cam1", encoder=EncoderConfig(bitrate=2_000_000),
                             fps_hint=25, relay_config=relay.config)
    relay.add_publication(publisher.publication)
    publisher.start()                          # on the event loop
    publisher.submit(frame, time.monotonic())  # from any thread, as frames are decoded
    await publisher.close()

- Newest frame wins: :meth:`Vp8Publisher.submit` never blocks and never queues more than
  one frame. Frames are encoded in the publisher's own worker thread (off the event loop);
  a frame submitted while another is being encoded replaces any frame still waiting, so a
  slow machine lowers the frame rate instead of adding delay.
- Keyframes: PLI/FIR from any subscriber reach :meth:`Vp8Publisher.request_keyframe`
  through the publication (coalesced there, RFC 4585 6.3.1) and are coalesced again into
  one forced keyframe at most every ``min_keyframe_interval_s``, never dropped. A frame of a
  new size re-creates the encoder (:class:`~bridge.encoder.Vp8Encoder`), which starts with
  a keyframe.
- Rate: the subscribers' lowest receive estimate (REMB, aggregated by the publication) sets
  the encoder's rate within :attr:`~bridge.encoder.EncoderConfig.lowest_bitrate` ..
  ``bitrate``. A new rate reopens the encoder (a keyframe), so it is applied only when it
  differs by ``bitrate_step`` or more (back to the full rate: always), at most every
  ``bitrate_interval_s`` — the wall output's rule.
- Size: frames taller than ``max_height`` are scaled down (swscale AREA, one thread) before
  encoding, e.g. a 1080p or 4K camera goes out at 720p: scaling 1080p → 720p costs ~2 ms,
  encoding 1080p instead of 720p ~8 ms more (FIELD-NOTES.md), and 2 Mbit/s looks better at 720p.
- Idle when unwatched: while no slot carries or waits for the publication, submitted frames
  are dropped before encoding (the source may still be decoded for the wall); the first
  frame after that is a keyframe.
- RTP (RFC 3550, RFC 7741) by :class:`Vp8RtpStream`: one SSRC, 90 kHz timestamps from the
  capture time, a 15-bit PictureID per frame, marker on a frame's last packet, an RTCP
  sender report pair (NTP, RTP) per ``sender_report_interval_s`` for the slots to translate
  (RFC 3550 6.4.1). :class:`bridge.wall.WallOutput` sends through the same class.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
from av.video.reformatter import Interpolation, VideoReformatter

from .encoder import VIDEO_CLOCK_RATE, EncoderConfig, Vp8Encoder, packetize_vp8
from .publication import Publication, RelayConfig
from .rtp import RtpPacket, SenderReport

__all__ = ["PublisherStats", "Vp8Publisher", "Vp8RtpStream", "ntp_timestamp"]

logger = logging.getLogger(__name__)

_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
#: Payload type written into the stream's own packets; each slot rewrites it to its peer's.
PAYLOAD_TYPE = 96


def ntp_timestamp(wall_time: float) -> int:
    """The 64-bit NTP timestamp of a Unix time (RFC 3550 4)."""
    seconds = wall_time + _NTP_EPOCH_OFFSET
    whole = int(seconds)
    return (whole << 32) | int((seconds - whole) * (1 << 32))


class Vp8RtpStream:
    """One outgoing VP8 RTP stream into a local publication (RFC 3550, RFC 7741).

    Holds the stream's SSRC, sequence numbers, timestamp base and PictureID, and the
    sender-report schedule. :meth:`send_frame` packetises one encoded frame and hands its
    packets to the publication in order. Runs on the event loop only.
    """

    def __init__(
        self,
        publication: Publication,
        *,
        max_payload: int = 1200,
        sender_report_interval_s: float = 1.0,
        payload_type: int = PAYLOAD_TYPE,
    ) -> None:
        self.publication = publication
        self.max_payload = max_payload
        self.sender_report_interval_s = sender_report_interval_s
        self.payload_type = payload_type
        self.ssrc = random.getrandbits(32)
        self._sequence = random.getrandbits(16)
        self._timestamp_base = random.getrandbits(32)
        self._picture_id = random.getrandbits(15)
        self._epoch: float | None = None
        self._last_report_at: float | None = None
        self.frames = 0
        self.packets = 0
        self.octets = 0

    def rtp_timestamp(self, capture: float) -> int:
        """The 90 kHz RTP timestamp of a capture time (seconds on the sender's clock)."""
        if self._epoch is None:
            self._epoch = capture
        offset = round((capture - self._epoch) * VIDEO_CLOCK_RATE)
        return (self._timestamp_base + offset) & 0xFFFFFFFF

    def packets_of(self, data: bytes, timestamp: int) -> list[RtpPacket]:
        """The RTP packets of one encoded VP8 frame (advances sequence and PictureID)."""
        payloads = packetize_vp8(data, self._picture_id, self.max_payload)
        self._picture_id = (self._picture_id + 1) & 0x7FFF
        last = len(payloads) - 1
        out = []
        for index, payload in enumerate(payloads):
            out.append(
                RtpPacket(
                    payload_type=self.payload_type,
                    sequence_number=self._sequence,
                    timestamp=timestamp,
                    ssrc=self.ssrc,
                    payload=payload,
                    marker=index == last,
                )
            )
            self._sequence = (self._sequence + 1) & 0xFFFF
        return out

    async def send_frame(self, data: bytes, capture: float, wall_capture: float) -> None:
        """Send one encoded frame captured at *capture* (sender's clock) / *wall_capture*
        (Unix time), with a sender report first when one is due."""
        timestamp = self.rtp_timestamp(capture)
        if (
            self._last_report_at is None
            or capture - self._last_report_at >= self.sender_report_interval_s
            or capture < self._last_report_at
        ):
            self._last_report_at = capture
            self.publication.on_sender_report(SenderReport(ntp_timestamp(wall_capture), timestamp))
        arrival = time.time()
        for packet in self.packets_of(data, timestamp):
            self.packets += 1
            self.octets += len(packet.payload)
            await self.publication.on_rtp(packet, arrival)
        self.frames += 1


@dataclass(slots=True)
class PublisherStats:
    """Counters for metrics, tests and the benchmark (written by the worker and the loop)."""

    submitted: int = 0
    replaced: int = 0  # submitted frames overwritten by a newer one before encoding
    unwatched: int = 0  # submitted frames dropped because nobody watched
    encoded: int = 0
    sent: int = 0  # encoded frames handed to the publication
    keyframes: int = 0
    keyframe_requests: int = 0
    bitrate_changes: int = 0  # REMB moved the encoder's rate
    encoders_opened: int = 0  # new encoder sizes (first frame, size changes)
    errors: int = 0
    encode_s: float = 0.0  # CPU seconds in the worker thread
    last_sent_at: float | None = None  # capture time of the last frame sent
    width: int = 0
    height: int = 0


class Vp8Publisher:
    """Encodes submitted frames to VP8 once and publishes them (see the module docstring).

    Implements :class:`~bridge.publication.UpstreamPort` for its publication.
    """

    def __init__(
        self,
        publication_id: str,
        *,
        encoder: EncoderConfig | None = None,
        fps_hint: int = 30,
        relay_config: RelayConfig | None = None,
        min_keyframe_interval_s: float = 0.25,
        sender_report_interval_s: float = 1.0,
        idle_when_unwatched: bool = True,
        bitrate_step: float = 0.15,
        bitrate_interval_s: float = 2.0,
        max_height: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= fps_hint <= 120:
            raise ValueError(f"fps_hint must lie in 1..120, got {fps_hint}")
        if max_height is not None and max_height < 16:
            raise ValueError(f"max_height must be at least 16, got {max_height}")
        if not 0 <= bitrate_step < 1 or bitrate_interval_s < 0:
            raise ValueError("bitrate_step must lie in [0, 1), bitrate_interval_s >= 0")
        self.id = publication_id
        self.encoder_config = encoder or EncoderConfig()
        self.fps_hint = fps_hint
        self.min_keyframe_interval_s = min_keyframe_interval_s
        self.idle_when_unwatched = idle_when_unwatched
        self.bitrate_step = bitrate_step
        self.bitrate_interval_s = bitrate_interval_s
        self.max_height = max_height
        self.publication = Publication(publication_id, "video", config=relay_config)
        self.publication.bind(self)
        self.stream = Vp8RtpStream(
            self.publication,
            max_payload=self.encoder_config.max_payload,
            sender_report_interval_s=sender_report_interval_s,
        )
        self.stats = PublisherStats()
        self.remb: int | None = None
        self.bitrate = self.encoder_config.bitrate  # the encoder's target now
        self._bitrate_wanted = self.bitrate
        self._bitrate_changed_at: float | None = None
        self._clock = clock
        self._wall_clock = wall_clock
        self._encoder = Vp8Encoder(self.encoder_config, fps_hint)
        self._reformatter = VideoReformatter()  # the worker's, reused
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"vp8-{publication_id}")
        self._lock = threading.Lock()  # guards _pending, _busy, _keyframe_wanted, stats
        self._pending: tuple[av.VideoFrame, float] | None = None
        self._busy = False
        self._keyframe_wanted = True
        self._last_keyframe_at: float | None = None
        self._was_watched = False
        self._size: tuple[int, int] | None = None  # of the worker's current encoder
        self._error_logged = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: collections.deque[tuple[list[tuple[bytes, bool]], float, float]] = (
            collections.deque()
        )
        self._sender: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.closed = False

    def __repr__(self) -> str:
        return f"Vp8Publisher({self.id!r})"

    @property
    def watched(self) -> bool:
        """True while some slot carries this publication or waits for its keyframe."""
        return bool(self.publication.slots)

    # -- UpstreamPort ---------------------------------------------------------------------

    def request_keyframe(self) -> None:
        """A subscriber asked for a keyframe (PLI/FIR): the next allowed frame is one."""
        with self._lock:
            self._keyframe_wanted = True
            self.stats.keyframe_requests += 1

    def send_remb(self, bitrate: int) -> None:
        """The subscribers' lowest receive estimate (REMB): the encoder's rate follows it
        within :attr:`~bridge.encoder.EncoderConfig.lowest_bitrate` .. ``bitrate``."""
        cfg = self.encoder_config
        with self._lock:
            self.remb = bitrate
            self._bitrate_wanted = max(cfg.lowest_bitrate, min(cfg.bitrate, int(bitrate)))

    def _next_bitrate(self, now: float) -> int:
        """The rate for the next frame (under the lock): the wanted one once the change is
        worth a keyframe."""
        wanted, current = self._bitrate_wanted, self.bitrate
        if wanted == current:
            return current
        changed_at = self._bitrate_changed_at
        if changed_at is not None and now - changed_at < self.bitrate_interval_s:
            return current
        to_limit = wanted == self.encoder_config.bitrate  # back to full rate: always worth it
        if not to_limit and abs(wanted - current) < self.bitrate_step * current:
            return current
        self._bitrate_changed_at = now
        self.stats.bitrate_changes += 1
        logger.info("%r: %d -> %d bit/s (REMB)", self, current, wanted)
        self.bitrate = wanted
        return wanted

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        """Bind to the running event loop and start sending (idempotent)."""
        if self._sender is None and not self.closed:
            self._loop = asyncio.get_running_loop()
            self._sender = asyncio.ensure_future(self._send_loop())

    def submit(self, frame: av.VideoFrame, capture_time: float) -> None:
        """Offer one decoded frame captured at *capture_time* (the publisher's clock,
        monotonic seconds by default). Callable from any thread; never blocks.

        The frame is encoded later in the worker thread, unless a newer frame replaces it
        first. Its ``pts`` and ``pict_type`` may be overwritten; its pixels are only read.
        """
        if self.closed or self._loop is None:
            return
        with self._lock:
            self.stats.submitted += 1
            if self.idle_when_unwatched and not self.watched:
                self.stats.unwatched += 1
                if self._pending is not None:
                    self._pending = None
                self._was_watched = False
                return
            if not self._was_watched:  # the first frame someone sees: make it a keyframe
                self._was_watched = True
                self._keyframe_wanted = True
                self._last_keyframe_at = None
            if self._pending is not None:
                self.stats.replaced += 1
            self._pending = (frame, capture_time)
            if self._busy:
                return
            self._busy = True
        try:
            self._executor.submit(self._work)
        except RuntimeError:  # shut down meanwhile
            with self._lock:
                self._busy = False

    async def close(self) -> None:
        """Stop encoding and sending, close the publication (its slots go blank); idempotent."""
        if self.closed:
            return
        self.closed = True
        with self._lock:
            self._pending = None
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        self.publication.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._executor.shutdown)
        self._encoder.close()
        self._outbox.clear()

    # -- worker thread --------------------------------------------------------------------

    def _work(self) -> None:
        """Encode pending frames until none is left (in the worker thread)."""
        while True:
            with self._lock:
                job = self._pending
                self._pending = None
                if job is None or self.closed:
                    self._busy = False
                    return
                now = self._clock()
                keyframe = self._keyframe_wanted and (
                    self._last_keyframe_at is None
                    or now - self._last_keyframe_at >= self.min_keyframe_interval_s
                )
                if keyframe:
                    self._keyframe_wanted = False
                bitrate = self._next_bitrate(now)
            frame, capture = job
            started = time.thread_time()
            try:
                encoded = self._encode(frame, keyframe, bitrate, capture)
            except Exception:
                with self._lock:
                    self.stats.errors += 1
                    self._keyframe_wanted = True
                if not self._error_logged:
                    self._error_logged = True
                    logger.exception("%r could not encode a frame", self)
                continue
            self._error_logged = False
            wall_capture = self._wall_clock() - (self._clock() - capture)
            with self._lock:
                self.stats.encode_s += time.thread_time() - started
                self.stats.encoded += len(encoded)
                for _, is_keyframe in encoded:
                    if is_keyframe:
                        self.stats.keyframes += 1
                        self._last_keyframe_at = now
                self.stats.width, self.stats.height = frame.width, frame.height
            if encoded and self._loop is not None and not self.closed:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to do
                    self._loop.call_soon_threadsafe(self._deliver, encoded, capture, wall_capture)

    def _encode(
        self, frame: av.VideoFrame, keyframe: bool, bitrate: int, capture: float
    ) -> list[tuple[bytes, bool]]:
        if self.max_height is not None and frame.height > self.max_height:
            height = self.max_height & ~1
            width = max(2, round(frame.width * height / frame.height / 2) * 2)
            frame = self._reformatter.reformat(
                frame,
                width=width,
                height=height,
                format="yuv420p",
                interpolation=Interpolation.AREA,
                threads=1,
            )
        elif frame.format.name != "yuv420p":  # e.g. yuvj420p from MJPEG/H.264 full range
            frame = self._reformatter.reformat(frame, format="yuv420p", threads=1)
        size = (frame.width, frame.height)
        if size != self._size:  # Vp8Encoder re-creates its codec, starting with a keyframe
            self._size = size
            with self._lock:
                self.stats.encoders_opened += 1
        self._encoder.set_bitrate(bitrate)  # a new rate reopens the codec with a keyframe
        return self._encoder.encode(frame, keyframe=keyframe, at=capture)

    # -- event loop -----------------------------------------------------------------------

    def _deliver(self, encoded: list[tuple[bytes, bool]], capture: float, wall: float) -> None:
        if self.closed:
            return
        self._outbox.append((encoded, capture, wall))
        self._wake.set()

    async def _send_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outbox:
                encoded, capture, wall = self._outbox.popleft()
                for data, _ in encoded:
                    try:
                        await self.stream.send_frame(data, capture, wall)
                    except Exception:
                        logger.exception("%r could not send a frame", self)
                        continue
                    self.stats.sent += 1
                    self.stats.last_sent_at = capture
