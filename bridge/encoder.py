"""One wall output's VP8 encoder and RTP packetiser (RFC 7741).

ARCHITECTURE.md, "The wall": the composed canvas is encoded **once** per output and then
forwarded like any publisher's stream. The encoder is libvpx through PyAV, driven directly
(aiortc's own VP8 encoder caps the rate at 1.5 Mbit/s and picks its own speed; FIELD-NOTES.md):

- ``deadline=realtime`` with a high ``cpu-used`` (speed) and ``lag-in-frames=0``: every frame
  leaves the encoder as soon as it went in, nothing is held back for look-ahead;
- CBR-ish rate control (``bit_rate`` with ``minrate``/``maxrate`` and a one-second buffer), so
  the wall's stream has a steady bitrate the displays' links can plan for;
- ``static-thresh``: blocks that did not change (a wall is mostly still between frames of its
  feeds: labels, placeholders, banner) are skipped cheaply;
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


@dataclass(frozen=True, slots=True)
class EncoderConfig:
    """Settings of a wall output's VP8 encoder (libvpx through PyAV).

    Picked by measurement (``benchmarks/wall_bench.py --encoder``: the same 50 composed 1080p
    canvases of 25 moving 360p tiles encoded with each setting, one run, shared 2-core
    machine; ``benchmarks/results/wall.json``):

    ====================  ==================  ============
    setting               CPU ms per frame    kbit/s
    ====================  ==================  ============
    cpu-used 6 (aiortc)   19.6 – 20.5         4400
    cpu-used 10           12.5 – 16.5         4570 – 4840
    cpu-used 16           11.8 – 15.8         4910
    cpu-used 10, 2 thr.   20.4 – 22.0         4950 – 6160
    ====================  ==================  ============

    ``cpu_used=10`` costs about a third less than aiortc's setting and keeps the rate on
    target (16 saves little more and overshoots); a second thread only adds CPU (it splits
    the same work and costs the decoders their core), so one thread. The bitrate barely
    changes the CPU; 5 Mbit/s keeps labels and the frame marks of 25 tiles legible at 1080p.
    Keyframes: displays ask with PLI when they need one (answered within
    ``WallConfig.min_keyframe_interval_s``), so the periodic one is only a safety net.
    """

    bitrate: int = 5_000_000  # bits per second
    cpu_used: int = 10  # libvpx speed, 0 (best) .. 16 (fastest) in realtime mode
    threads: int = 1
    keyframe_interval_s: float = 10.0  # longest time between keyframes (PLIs ask sooner)
    static_threshold: int = 100  # libvpx static-thresh: skip blocks that barely changed
    max_payload: int = 1200  # bytes of VP8 payload per RTP packet (descriptor included)

    def __post_init__(self) -> None:
        if self.bitrate < 100_000:
            raise ValueError(f"bitrate must be at least 100 kbit/s, got {self.bitrate}")
        if not 0 <= self.cpu_used <= 16:
            raise ValueError(f"cpu_used must lie in 0..16, got {self.cpu_used}")
        if self.threads < 1:
            raise ValueError("threads must be at least 1")
        if self.keyframe_interval_s <= 0:
            raise ValueError("keyframe_interval_s must be positive")
        if not 100 <= self.max_payload <= 1400:
            raise ValueError(f"max_payload must lie in 100..1400, got {self.max_payload}")


class Vp8Encoder:
    """libvpx VP8 for one output: yuv420p frames in, encoded frames (bytes) out.

    Not thread-safe: one thread encodes (the output's worker). The codec is opened lazily on
    the first frame with that frame's size, and reopened if the size changes.
    """

    def __init__(self, config: EncoderConfig | None = None, fps: int = 30) -> None:
        self.config = config or EncoderConfig()
        self.fps = fps
        self._codec: VideoCodecContext | None = None
        self._size: tuple[int, int] | None = None
        self._index = 0
        self.keyframes = 0
        self.frames = 0

    def _open(self, width: int, height: int) -> VideoCodecContext:
        cfg = self.config
        codec = CodecContext.create("libvpx", "w")
        assert isinstance(codec, VideoCodecContext)
        codec.width = width
        codec.height = height
        codec.pix_fmt = "yuv420p"
        codec.time_base = fractions.Fraction(1, self.fps)
        codec.framerate = fractions.Fraction(self.fps, 1)
        codec.bit_rate = cfg.bitrate
        codec.gop_size = max(1, round(cfg.keyframe_interval_s * self.fps))
        codec.thread_count = cfg.threads
        codec.options = {
            "deadline": "realtime",
            "cpu-used": str(cfg.cpu_used),
            "lag-in-frames": "0",
            "static-thresh": str(cfg.static_threshold),
            "minrate": str(cfg.bitrate),
            "maxrate": str(cfg.bitrate),
            "bufsize": str(cfg.bitrate),
            "undershoot-pct": "95",
            "overshoot-pct": "15",
            "max-intra-rate": "300",  # a keyframe may take at most 3 frames' worth of bits
            "qmin": "4",
            "qmax": "56",
        }
        codec.open()
        logger.info(
            "VP8 encoder %dx%d@%d: %d bit/s, cpu-used %d, %d thread(s)",
            width,
            height,
            self.fps,
            cfg.bitrate,
            cfg.cpu_used,
            cfg.threads,
        )
        return codec

    def encode(self, frame: av.VideoFrame, *, keyframe: bool = False) -> list[tuple[bytes, bool]]:
        """Encode ``frame``; returns ``(data, is_keyframe)`` per encoded frame (usually one).

        ``keyframe`` forces an intra frame (a display asked for one). The frame's ``pts`` and
        ``pict_type`` are overwritten; its pixels are only read.
        """
        size = (frame.width, frame.height)
        if self._codec is None or size != self._size:
            self._codec = self._open(*size)
            self._size = size
            self._index = 0
            keyframe = True
        frame.pts = self._index
        frame.time_base = self._codec.time_base
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
