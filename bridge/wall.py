"""One wall output: compose at a fixed rate, encode once, publish like any publisher.

ARCHITECTURE.md, "The wall": the feeds on the wall are decoded (:mod:`bridge.feeds`),
composed by the numpy :class:`~bridge.compositor.Compositor`, encoded once per output
(:mod:`bridge.encoder`, VP8) and forwarded to every wall display, the operator's preview, the
recorder and the uplink **like any other publisher**: a :class:`WallOutput` owns a local
:class:`~bridge.publication.Publication` and feeds it RTP through
:meth:`~bridge.publication.Publication.on_rtp`, so the relay's slots switch to it, rewrite it
and answer NACKs exactly as for a camera.

- Fixed rate: a tick every ``1 / fps`` seconds composes the sources' latest pictures and
  encodes the canvas in the output's own worker thread (off the event loop). A layout
  showing ``large_layout_tiles`` sources or more is composed at ``large_layout_fps``
  instead (see :class:`WallConfig` for the measurements behind it). A tick that
  finds the previous frame still being made is skipped, never queued, so a slow machine
  lowers the frame rate instead of adding delay; a slow or broken source never delays a tick
  (the compositor never waits for a source).
- Keyframes: PLI/FIR from any display reach :meth:`WallOutput.request_keyframe` through the
  publication (already coalesced there, RFC 4585 6.3.1); requests are coalesced again into
  one forced keyframe at most every ``min_keyframe_interval_s``, never dropped.
- Idle when unwatched: while no slot carries or waits for the output, nothing is composed
  or encoded; the first frame after that is a keyframe.
- Bitrate: the displays' lowest receive estimate (REMB, aggregated by the publication)
  sets the encoder's rate within :attr:`EncoderConfig.lowest_bitrate` .. ``bitrate``. A new
  rate reopens the encoder (a keyframe: libvpx through FFmpeg cannot retarget an open
  encoder), so it is applied only when it differs by ``bitrate_step`` or more, and at most
  every ``bitrate_interval_s``.
- RTP (RFC 3550, RFC 7741) by :class:`~bridge.vp8_publisher.Vp8RtpStream`, shared with the
  gateways' transcoder: one SSRC, 90 kHz timestamps from the capture (compose) time, a
  15-bit PictureID per frame, marker on a frame's last packet; an RTCP sender report pair
  (NTP, RTP) per second for the slots to translate (RFC 3550 6.4.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .compositor import Compositor, CompositorConfig, SourceFrame, TileSpec
from .encoder import EncoderConfig, Vp8Encoder
from .publication import Publication, RelayConfig
from .vp8_publisher import Vp8RtpStream, ntp_timestamp

__all__ = ["WallConfig", "WallOutput", "WallStats", "ntp_timestamp"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WallConfig:
    """One wall output (owned by :mod:`bridge`; the composition root may override).

    The canvas size is the compositor's (``compositor.width`` x ``compositor.height``,
    1920x1080 by default).

    ``large_layout_fps``: what a big layout costs on this 2-core machine
    (``benchmarks/wall_bench.py``, 25 feeds into the banded 1080p ``25`` layout, VP8 1080p
    out at 5 Mbit/s; quiet machine, load < 2, three interleaved rounds, medians; % of one
    core at the nominal rates):

    ======================  =======  ================  ===============  =========
    source (each of 25)     decode   compose 30 / 15   encode 30 / 15   sum
    ======================  =======  ================  ===============  =========
    360p30 (the budget's)   51 %     25 / 12 %         45 / 26 %        121 / 90
    202p30 (360x202)        24 %     5 / 3 %           44 / 27 %        73 / 54
    360p15 (load 3-5)       28 %     14 / 12 %         43 / 28 %        85 / 70
    ======================  =======  ================  ===============  =========

    (30 / 15: fps out. Per frame: decode 0.68, 0.32, 0.75 ms; compose 8.2, 1.7, 4.6 ms at
    30 fps out; encode ~15 ms at 30 fps out, ~17.5 ms at 15, where each frame gets twice the
    bits. 202p pictures are copied 1:1 into the 384x202/204 tiles
    (:attr:`CompositorConfig.copy_tolerance`); 216p ones too with ``crop_tolerance`` 0.07,
    else they are scaled: compose 5.3 ms, sum 81 / 52. 15 fps sources at 30 fps out leave
    half the tiles unchanged per frame, copied from the previous canvas. The 360p30 row
    before this measurement's changes, same run: 130 / 91.)

    Decoding every frame of every feed cannot be avoided (VP8 inter frames need all their
    predecessors), so what a big layout saves is composing and encoding: at 15 fps it saves
    about a third of a core against 30 fps, and 25 small tiles still move smoothly. Layouts
    with fewer sources keep the full rate. The ARCHITECTURE.md budget (60 % at 30 fps) is
    not reachable with one-thread libvpx on this machine: encoding alone is ~45 %. With the
    sources sent at the tile's size (the video-limit hint) the 15 fps wall is within it.
    """

    output_id: str = "wall"
    fps: int = 30
    compositor: CompositorConfig = field(default_factory=CompositorConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    large_layout_tiles: int = 16
    large_layout_fps: int | None = 15  # None: every layout at fps
    min_keyframe_interval_s: float = 0.25
    sender_report_interval_s: float = 1.0
    bitrate_step: float = 0.15  # REMB: apply a new rate when it differs by this fraction...
    bitrate_interval_s: float = 2.0  # ... and the last change is this old
    idle_when_unwatched: bool = True
    clock_format: str = "%Y-%m-%d %H:%M:%S"

    def fps_for(self, sources: int) -> int:
        """The compose rate of a layout showing ``sources`` tiles with a source."""
        if self.large_layout_fps is not None and sources >= self.large_layout_tiles:
            return min(self.fps, self.large_layout_fps)
        return self.fps

    def __post_init__(self) -> None:
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must lie in 1..60, got {self.fps}")
        if self.large_layout_fps is not None and not 1 <= self.large_layout_fps <= 60:
            raise ValueError(f"large_layout_fps must lie in 1..60, got {self.large_layout_fps}")
        if not 0 <= self.bitrate_step < 1 or self.bitrate_interval_s < 0:
            raise ValueError("bitrate_step must lie in [0, 1), bitrate_interval_s >= 0")
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
    bitrate_changes: int = 0
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
        self.bitrate = self.config.encoder.bitrate  # the encoder's target now
        self._bitrate_wanted = self.bitrate
        self._bitrate_changed_at: float | None = None
        self._clock = clock
        self._wall_clock = wall_clock
        self._encoder = Vp8Encoder(self.config.encoder, self.config.fps)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"wall-{self.id}")
        self._stats_lock = threading.Lock()
        self._stream = Vp8RtpStream(
            self.publication,
            max_payload=self.config.encoder.max_payload,
            sender_report_interval_s=self.config.sender_report_interval_s,
        )
        self._keyframe_wanted = True
        self._last_keyframe_at: float | None = None
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
    def fps(self) -> int:
        """The compose rate now: ``fps``, or ``large_layout_fps`` for a big layout."""
        sources = sum(1 for tile in self.compositor.tiles if tile.source_id is not None)
        return self.config.fps_for(sources)

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
        """The displays' lowest receive estimate (REMB): the encoder's rate follows it within
        :attr:`EncoderConfig.lowest_bitrate` .. ``bitrate`` (see the module docstring)."""
        self.remb = bitrate
        cfg = self.config.encoder
        self._bitrate_wanted = max(cfg.lowest_bitrate, min(cfg.bitrate, int(bitrate)))

    def _next_bitrate(self, now: float) -> int:
        """The rate for the next frame: the wanted one once the change is worth a keyframe."""
        wanted, current = self._bitrate_wanted, self.bitrate
        if wanted == current:
            return current
        changed_at = self._bitrate_changed_at
        if changed_at is not None and now - changed_at < self.config.bitrate_interval_s:
            return current
        to_limit = wanted == self.config.encoder.bitrate  # back to full rate: always worth it
        if not to_limit and abs(wanted - current) < self.config.bitrate_step * current:
            return current
        self._bitrate_changed_at = now
        self.stats.bitrate_changes += 1
        logger.info("wall output %s: %d -> %d bit/s (REMB)", self.id, current, wanted)
        self.bitrate = wanted
        return wanted

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
        next_at = self._clock()
        while True:
            period = 1.0 / self.fps
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
            bitrate = self._next_bitrate(now)
            try:
                encoded = await loop.run_in_executor(
                    self._executor, self._produce, now, wall_now, keyframe, bitrate
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

    def _produce(
        self, now: float, wall_now: float, keyframe: bool, bitrate: int
    ) -> list[tuple[bytes, bool]]:
        """Compose and encode one frame (in the output's worker thread)."""
        started = time.thread_time()
        clock_text = time.strftime(self.config.clock_format, time.localtime(wall_now))
        frame = self.compositor.compose(now, clock_text)
        composed = time.thread_time()
        self._encoder.set_bitrate(bitrate)
        encoded = self._encoder.encode(frame, keyframe=keyframe, at=now)
        with self._stats_lock:
            self.stats.compose_s += composed - started
            self.stats.encode_s += time.thread_time() - composed
        return encoded

    async def _send(self, data: bytes, capture: float, wall_capture: float) -> None:
        stream = self._stream
        packets, octets = stream.packets, stream.octets
        await stream.send_frame(data, capture, wall_capture)
        self.stats.packets += stream.packets - packets
        self.stats.octets += stream.octets - octets
        self.stats.frames += 1
        self.stats.last_frame_at = capture
