"""One wall output's VP8 encoder and RTP packetiser (RFC 7741).

ARCHITECTURE.md, "The wall": the composed canvas is encoded **once** per output and then
forwarded like any publisher's stream. The encoder is libvpx through PyAV, driven directly
(aiortc's own VP8 encoder caps the rate at 1.5 Mbit/s and picks its own speed; FIELD-NOTES.md):

- ``deadline=realtime`` with a fixed top speed (``cpu-used=-16``) and ``lag-in-frames=0``:
  every frame leaves the encoder as soon as it went in, nothing is held back for look-ahead;
- timestamps from the capture clock (90 kHz time base, RFC 7741 4.1), so the rate control
  stays right when an output composes at a lower rate (:attr:`WallConfig.large_layout_fps`)
  or a tick is skipped;
- CBR-ish rate control (``bit_rate`` with ``minrate``/``maxrate`` and a one-second buffer), so
  the wall's stream has a steady bitrate the displays' links can plan for;
- ``static-thresh``: blocks that did not change (a wall is mostly still between frames of its
  feeds: labels, placeholders, banner) are skipped cheaply;
- the bitrate follows the receivers' estimate (REMB) within ``min_bitrate`` .. ``bitrate``
  (:meth:`Vp8Encoder.set_bitrate`): libvpx through FFmpeg cannot change the rate of an open
  encoder (measured: a new ``bit_rate`` on the open codec left the output at the old rate), so
  a new rate reopens the encoder, which starts with a keyframe; the caller keeps changes rare;
- keyframes on request (:meth:`Vp8Encoder.encode` ``keyframe=True`` sets the frame's picture
  type to I, which libvpx turns into ``VPX_EFLAG_FORCE_KF``) and at most every
  ``keyframe_interval_s`` otherwise, so a display that lost packets recovers on its own.

The settings were picked by measurement (``benchmarks/wall_bench.py --encoder``); see the
defaults of :class:`EncoderConfig` for the figures behind them.

:func:`packetize_vp8` splits one encoded frame into RTP payloads (RFC 7741 section 4.2
descriptor with a 15-bit PictureID, S=1 on the first packet of the frame, PID=0); the caller
adds the RTP header, marker bit on the last packet (RFC 7741 section 4.1).
"""

from __future__ import annotations

import fractions
import logging
from dataclasses import dataclass

import av
from av.codec.context import CodecContext
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType

__all__ = ["EncoderConfig", "Vp8Encoder", "packetize_vp8"]

logger = logging.getLogger(__name__)

#: RTP video clock (RFC 7741 section 4.1: 90 kHz).
VIDEO_CLOCK_RATE = 90000
_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)


@dataclass(frozen=True, slots=True)
class EncoderConfig:
    """Settings of a wall output's VP8 encoder (libvpx through PyAV).

    Picked by measurement (``benchmarks/wall_bench.py --encoder``: the same 50 composed 1080p
    canvases of 25 moving 360p tiles encoded with each setting, interleaved rounds, medians,
    shared 2-core machine; ``benchmarks/results/wall.json``):

    ===========================  ================  ============
    setting (5 Mbit/s, 1 thr.)   CPU ms per frame  kbit/s
    ===========================  ================  ============
    cpu-used 6 (aiortc)          15.9 – 20.5       4400 – 4480
    cpu-used 10 (adaptive)       11.6 – 12.2       4740 – 4920
    cpu-used 16                  11.3 – 11.7       4910 – 5000
    cpu-used -16 (fixed 16)      11.3 – 11.6       4910 – 5000
    cpu-used -12 (fixed 12)      12.8 – 13.4       4610 – 4670
    cpu-used -8 (fixed 8)        15.1 – 15.6       4430 – 4450
    -16, static-thresh 1000      11.6 – 11.7       5000
    -16, error-resilient         11.8 – 12.2       5130
    -16, token-parts 2           11.9 – 12.1       5000
    -16, screen-content-mode 1   11.9 – 12.3       5710
    -16, 2 threads               27.6              6290
    ===========================  ================  ============

    (Two sweeps; the static-thresh, error-resilient, token-parts and screen-content rows come
    from a one-off variant of the sweep with those libvpx options added.)

    In realtime mode a positive ``cpu-used`` n makes libvpx pick its speed itself, aiming
    to spend (16 - n)/16 of the frame interval of *wall-clock* time, so its cost depends on
    the machine's load; a negative one fixes the speed at |n|. ``-16`` is the cheapest and
    keeps the rate on target; none of the other switches saves anything measurable, and
    a second thread only adds CPU (it splits the same work and costs the decoders their
    core), so one thread. The bitrate barely changes the CPU. With ``qmax`` 56 the 25-tile
    wall cannot go below ~5 Mbit/s (the quantiser is at its limit; 1, 2 and 3 Mbit/s targets
    all gave 5000 kbit/s), with 63 it reaches ~3.8 Mbit/s: when REMB asks for less than
    ``bitrate``, :meth:`Vp8Encoder.set_bitrate` lifts ``qmax`` to 63, so the rate can follow.
    Keyframes: displays ask with PLI when they need one (answered within
    ``WallConfig.min_keyframe_interval_s``), so the periodic one is only a safety net.
    """

    bitrate: int = 5_000_000  # bits per second (the most REMB may raise it to)
    min_bitrate: int | None = None  # the least REMB may lower it to (None: bitrate / 5)
    cpu_used: int = -16  # libvpx realtime speed: -n fixed speed n, +n adaptive (see above)
    threads: int = 1
    keyframe_interval_s: float = 10.0  # longest time between keyframes (PLIs ask sooner)
    static_threshold: int = 100  # libvpx static-thresh: skip blocks that barely changed
    max_payload: int = 1200  # bytes of VP8 payload per RTP packet (descriptor included)
    qmax: int = 56  # worst quantiser at the configured bitrate (63 while REMB holds it lower)

    @property
    def lowest_bitrate(self) -> int:
        """The least bitrate REMB may lower the encoder to."""
        if self.min_bitrate is not None:
            return self.min_bitrate
        return max(100_000, self.bitrate // 5)

    def __post_init__(self) -> None:
        if self.bitrate < 100_000:
            raise ValueError(f"bitrate must be at least 100 kbit/s, got {self.bitrate}")
        if self.min_bitrate is not None and not 100_000 <= self.min_bitrate <= self.bitrate:
            raise ValueError(
                f"min_bitrate must lie in 100 kbit/s .. bitrate, got {self.min_bitrate}"
            )
        if not -16 <= self.cpu_used <= 16:
            raise ValueError(f"cpu_used must lie in -16..16, got {self.cpu_used}")
        if not 4 <= self.qmax <= 63:
            raise ValueError(f"qmax must lie in 4..63, got {self.qmax}")
        if self.threads < 1:
            raise ValueError("threads must be at least 1")
        if self.keyframe_interval_s <= 0:
            raise ValueError("keyframe_interval_s must be positive")
        if not 100 <= self.max_payload <= 1400:
            raise ValueError(f"max_payload must lie in 100..1400, got {self.max_payload}")


class Vp8Encoder:
    """libvpx VP8 for one output: yuv420p frames in, encoded frames (bytes) out.

    Not thread-safe: one thread encodes (the output's worker). The codec is opened lazily on
    the first frame with that frame's size, and reopened (with a keyframe) if the size or the
    bitrate (:meth:`set_bitrate`) changes.
    """

    def __init__(self, config: EncoderConfig | None = None, fps: int = 30) -> None:
        self.config = config or EncoderConfig()
        self.fps = fps
        self.bitrate = self.config.bitrate
        self._codec: VideoCodecContext | None = None
        self._size: tuple[int, int] | None = None
        self._opened_bitrate = self.bitrate
        self._index = 0
        self._epoch: float | None = None
        self._last_pts = -1
        self.keyframes = 0
        self.frames = 0
        self.reopened = 0

    def set_bitrate(self, bitrate: int) -> int:
        """Aim at ``bitrate`` (clamped to :attr:`EncoderConfig.lowest_bitrate` .. ``bitrate``) from
        the next frame on, which is then a keyframe; returns the rate in force."""
        cfg = self.config
        self.bitrate = max(cfg.lowest_bitrate, min(cfg.bitrate, int(bitrate)))
        return self.bitrate

    def _open(self, width: int, height: int) -> VideoCodecContext:
        cfg = self.config
        bitrate = self.bitrate
        codec = CodecContext.create("libvpx", "w")
        assert isinstance(codec, VideoCodecContext)
        codec.width = width
        codec.height = height
        codec.pix_fmt = "yuv420p"
        codec.time_base = _TIME_BASE
        codec.framerate = fractions.Fraction(self.fps, 1)
        codec.bit_rate = bitrate
        codec.gop_size = max(1, round(cfg.keyframe_interval_s * self.fps))
        codec.thread_count = cfg.threads
        codec.options = {
            "deadline": "realtime",
            "cpu-used": str(cfg.cpu_used),
            "lag-in-frames": "0",
            "static-thresh": str(cfg.static_threshold),
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "bufsize": str(bitrate),
            "undershoot-pct": "95",
            "overshoot-pct": "15",
            "max-intra-rate": "300",  # a keyframe may take at most 3 frames' worth of bits
            "qmin": "4",
            "qmax": str(cfg.qmax if bitrate >= cfg.bitrate else 63),
        }
        codec.open()
        logger.info(
            "VP8 encoder %dx%d@%d: %d bit/s, cpu-used %d, %d thread(s)",
            width,
            height,
            self.fps,
            bitrate,
            cfg.cpu_used,
            cfg.threads,
        )
        return codec

    def encode(
        self, frame: av.VideoFrame, *, keyframe: bool = False, at: float | None = None
    ) -> list[tuple[bytes, bool]]:
        """Encode ``frame``; returns ``(data, is_keyframe)`` per encoded frame (usually one).

        ``keyframe`` forces an intra frame (a display asked for one). ``at`` is the capture
        time in seconds (any monotonic clock); without it frames are taken to be ``1 / fps``
        apart. The frame's ``pts``, ``time_base`` and ``pict_type`` are overwritten; its
        pixels are only read.
        """
        size = (frame.width, frame.height)
        if self._codec is None or size != self._size or self.bitrate != self._opened_bitrate:
            if self._codec is not None:
                self.reopened += 1
            self._codec = self._open(*size)
            self._size = size
            self._opened_bitrate = self.bitrate
            keyframe = True
        if at is None:
            pts = self._index * VIDEO_CLOCK_RATE // self.fps
        else:
            if self._epoch is None:
                self._epoch = at
            pts = round((at - self._epoch) * VIDEO_CLOCK_RATE)
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = _TIME_BASE
        frame.duration = VIDEO_CLOCK_RATE // self.fps
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        self._index += 1
        out: list[tuple[bytes, bool]] = []
        for packet in self._codec.encode(frame):
            data = bytes(packet)
            key = bool(packet.is_keyframe)
            self.frames += 1
            self.keyframes += key
            out.append((data, key))
        return out

    def close(self) -> None:
        """Drop the codec (idempotent); the next frame opens a new one with a keyframe."""
        self._codec = None
        self._size = None


def packetize_vp8(data: bytes, picture_id: int, max_payload: int = 1200) -> list[bytes]:
    """RTP payloads of one VP8 frame (RFC 7741 section 4.2).

    Each payload starts with a 4-byte descriptor: X=1, S=1 only on the first one, PID=0;
    I=1 with the 15-bit PictureID (M=1). The frame is split into equal-sized pieces so no
    packet is much smaller than the rest.
    """
    if not data:
        raise ValueError("cannot packetize an empty VP8 frame")
    pid = picture_id & 0x7FFF
    room = max_payload - 4
    count = -(-len(data) // room)
    size = -(-len(data) // count)
    tail = bytes([0x80, 0x80 | (pid >> 8), pid & 0xFF])
    out = []
    for i in range(count):
        first = 0x90 if i == 0 else 0x80  # X=1, S on the first packet, PID=0
        out.append(bytes([first]) + tail + data[i * size : (i + 1) * size])
    return out
