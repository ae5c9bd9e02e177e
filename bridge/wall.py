"""One wall output: compose at a fixed rate, encode once, publish like any publisher.

ARCHITECTURE.md, "The wall": the feeds on the wall are decoded (:mod:`bridge.feeds`),
composed by the numpy :class:`~bridge.compositor.Compositor`, encoded once per output
(:mod:`bridge.encoder`, VP8) and forwarded to every wall display, the operator's preview, the
recorder and the uplink **like any other publisher**: a :class:`WallOutput` owns a local
:class:`~bridge.publication.Publication` and feeds it RTP through
:meth:`~bridge.publication.Publication.on_rtp`, so the relay's slots switch to it, rewrite it
and answer NACKs exactly as for a camera.

- Fixed rate: a tick every ``1 / fps`` seconds composes the sources' latest pictures and
  encodes the canvas in the output's own worker thread (off the event loop). A tick that
  finds the previous frame still being made is skipped, never queued, so a slow machine
  lowers the frame rate instead of adding delay; a slow or broken source never delays a tick
  (the compositor never waits for a source).
- Keyframes: PLI/FIR from any display reach :meth:`WallOutput.request_keyframe` through the
  publication (already coalesced there, RFC 4585 6.3.1); requests are coalesced again into
  one forced keyframe at most every ``min_keyframe_interval_s``, never dropped.
- Idle when unwatched: while no slot carries or waits for the output, nothing is composed
  or encoded; the first frame after that is a keyframe.
- RTP (RFC 3550, RFC 7741): one SSRC, 90 kHz timestamps from the capture (compose) time,
  a 15-bit PictureID per frame, marker on a frame's last packet; an RTCP sender report pair
  (NTP, RTP) per second for the slots to translate (RFC 3550 6.4.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .compositor import Compositor, CompositorConfig, SourceFrame, TileSpec
from .encoder import VIDEO_CLOCK_RATE, EncoderConfig, Vp8Encoder, packetize_vp8
from .publication import Publication, RelayConfig
from .rtp import RtpPacket, SenderReport

__all__ = ["WallConfig", "WallOutput", "WallStats", "ntp_timestamp"]

logger = logging.getLogger(__name__)

_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
#: Payload type written into the output's own packets; each slot rewrites it to its peer's.
_PAYLOAD_TYPE = 96


def ntp_timestamp(wall_time: float) -> int:
    """The 64-bit NTP timestamp of a Unix time (RFC 3550 4)."""
    seconds = wall_time + _NTP_EPOCH_OFFSET
    whole = int(seconds)
    return (whole << 32) | int((seconds - whole) * (1 << 32))


@dataclass(frozen=True, slots=True)
class WallConfig:
    """One wall output (owned by :mod:`bridge`; the composition root may override).

    The canvas size is the compositor's (``compositor.width`` x ``compositor.height``,
    1920x1080 by default).
    """

    output_id: str = "wall"
    fps: int = 30
    compositor: CompositorConfig = field(default_factory=CompositorConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    min_keyframe_interval_s: float = 0.25
    sender_report_interval_s: float = 1.0
    idle_when_unwatched: bool = True
    clock_format: str = "%Y-%m-%d %H:%M:%S"

    def __post_init__(self) -> None:
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must lie in 1..60, got {self.fps}")
        if not self.output_id:
            raise ValueError("output_id must not be empty")
        if self.min_keyframe_interval_s < 0:
            raise ValueError("min_keyframe_interval_s must not be negative")


@dataclass(slots=True)
class WallStats:
    """Counters for metrics, tests and the benchmark."""

    ticks: int = 0
    frames: int = 0  # composed and encoded
    skipped: int = 0  # ticks missed because the previous frame was still being made
    idle_ticks: int = 0  # ticks with nobody watching
    keyframes: int = 0
    keyframe_requests: int = 0
    packets: int = 0
    octets: int = 0
    errors: int = 0
    compose_s: float = 0.0  # CPU seconds in the worker thread
    encode_s: float = 0.0
    last_frame_at: float | None = None  # monotonic capture time of the last frame sent


class WallOutput:
    """Composes, encodes and publishes one wall output (see the module docstring).

    Control (:meth:`set_layout`, :meth:`set_banner`, :meth:`set_floor`, :meth:`push`,
    :meth:`remove`) may be called at any time from the event loop or any thread.
    :meth:`start` and :meth:`close` run on the event loop.
    """

    def __init__(
        self,
        config: WallConfig | None = None,
        *,
        relay_config: RelayConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or WallConfig()
        self.id = self.config.output_id
        self.compositor = Compositor(self.config.compositor)
        self.publication = Publication(self.id, "video", config=relay_config)
        self.publication.bind(self)
        self.stats = WallStats()
        self.remb: int | None = None
        self._clock = clock
        self._wall_clock = wall_clock
        self._encoder = Vp8Encoder(self.config.encoder, self.config.fps)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"wall-{self.id}")
        self._stats_lock = threading.Lock()
        self._ssrc = random.getrandbits(32)
        self._sequence = random.getrandbits(16)
        self._timestamp_base = random.getrandbits(32)
        self._picture_id = random.getrandbits(15)
        self._epoch: float | None = None
        self._keyframe_wanted = True
        self._last_keyframe_at: float | None = None
        self._last_report_at: float | None = None
        self._idle = True
        self._error_logged = False
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"WallOutput({self.id!r})"

    # -- control --------------------------------------------------------------------------

    def set_layout(
        self,
        kind: str,
        custom_rects: Sequence[Sequence[float]] | None,
        tiles: Sequence[TileSpec],
    ) -> None:
        """Show ``tiles`` in layout ``kind`` (raises :class:`~bridge.layout.LayoutError`)."""
        self.compositor.set_layout(kind, custom_rects, tiles)

    def set_banner(self, text: str) -> None:
        self.compositor.set_banner(text)

    def set_floor(self, source_id: str | None) -> None:
        self.compositor.set_floor(source_id)

    def push(self, source_id: str, frame: SourceFrame, now: float) -> None:
        """A source's latest decoded picture (``now`` on this output's monotonic clock)."""
        self.compositor.push(source_id, frame, now)

    def remove(self, source_id: str) -> None:
        """The source is gone: its tiles show it offline."""
        self.compositor.remove(source_id)

    @property
    def watched(self) -> bool:
        """True while some slot carries this output or waits for its keyframe."""
        return bool(self.publication.slots)

    # -- UpstreamPort (feedback from the displays, through the publication) --------------

    def request_keyframe(self) -> None:
        """A display asked for a keyframe (PLI/FIR): the next allowed frame is one."""
        self._keyframe_wanted = True
        with self._stats_lock:
            self.stats.keyframe_requests += 1

    def send_remb(self, bitrate: int) -> None:
        """The displays' lowest receive estimate (REMB); kept for metrics.

        The encoder keeps its configured rate: wall displays sit on the control room's LAN.
        """
        self.remb = bitrate

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        """Start ticking (idempotent)."""
        if self._task is None and not self.closed:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Stop ticking, close the publication (its slots go blank); idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.publication.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._executor.shutdown)
        self._encoder.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.config.fps
        next_at = self._clock()
        while True:
            now = self._clock()
            if next_at > now:
                await asyncio.sleep(next_at - now)
                now = self._clock()
            missed = int((now - next_at) // period)
            if missed > 0:  # the previous frame took too long: skip, never queue
                self.stats.skipped += missed
                next_at += missed * period
            next_at += period
            self.stats.ticks += 1
            if self.config.idle_when_unwatched and not self.watched:
                self.stats.idle_ticks += 1
                self._idle = True
                continue
            if self._idle:
                self._idle = False
                self._keyframe_wanted = True
                self._last_keyframe_at = None
            keyframe = self._keyframe_wanted and (
                self._last_keyframe_at is None
                or now - self._last_keyframe_at >= self.config.min_keyframe_interval_s
            )
            if keyframe:
                self._keyframe_wanted = False
            wall_now = self._wall_clock()
            try:
                encoded = await loop.run_in_executor(
                    self._executor, self._produce, now, wall_now, keyframe
                )
            except Exception:
                self.stats.errors += 1
                self._keyframe_wanted = True
                if not self._error_logged:
                    self._error_logged = True
                    logger.exception("wall output %s could not make a frame", self.id)
                continue
            self._error_logged = False
            for data, is_keyframe in encoded:
                if is_keyframe:
                    self._last_keyframe_at = now
                    self.stats.keyframes += 1
                await self._send(data, now, wall_now)

    def _produce(self, now: float, wall_now: float, keyframe: bool) -> list[tuple[bytes, bool]]:
        """Compose and encode one frame (in the output's worker thread)."""
        started = time.thread_time()
        clock_text = time.strftime(self.config.clock_format, time.localtime(wall_now))
        frame = self.compositor.compose(now, clock_text)
        composed = time.thread_time()
        encoded = self._encoder.encode(frame, keyframe=keyframe)
        with self._stats_lock:
            self.stats.compose_s += composed - started
            self.stats.encode_s += time.thread_time() - composed
        return encoded

    async def _send(self, data: bytes, capture: float, wall_capture: float) -> None:
        if self._epoch is None:
            self._epoch = capture
        timestamp = (
            self._timestamp_base + round((capture - self._epoch) * VIDEO_CLOCK_RATE)
        ) & 0xFFFFFFFF
        if (
            self._last_report_at is None
            or capture - self._last_report_at >= self.config.sender_report_interval_s
        ):
            self._last_report_at = capture
            self.publication.on_sender_report(SenderReport(ntp_timestamp(wall_capture), timestamp))
        payloads = packetize_vp8(data, self._picture_id, self.config.encoder.max_payload)
        self._picture_id = (self._picture_id + 1) & 0x7FFF
        last = len(payloads) - 1
        arrival = time.time()
        for index, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=_PAYLOAD_TYPE,
                sequence_number=self._sequence,
                timestamp=timestamp,
                ssrc=self._ssrc,
                payload=payload,
                marker=index == last,
            )
            self._sequence = (self._sequence + 1) & 0xFFFF
            self.stats.packets += 1
            self.stats.octets += len(payload)
            await self.publication.on_rtp(packet, arrival)
        self.stats.frames += 1
        self.stats.last_frame_at = capture
