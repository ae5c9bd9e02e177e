"""Scaling one source picture into one wall tile, plane by plane in I420.

The method is chosen per plane from the source and destination sizes, by measurement on this
machine (``benchmarks/compositor_bench.py``, resize table; one thread; quality on gratings:
"pass" = amplitude kept at half the destination's Nyquist frequency, 1 is sharp; "alias" =
amplitude left of a grating at 1.6x the destination's Nyquist, 0 is no aliasing):

===================  ============================  ============================================
case                 method                        measured (ms per tile for Y+U+V)
===================  ============================  ============================================
same size            plane copy                    nothing to filter
exact 2^k downscale  cv2 ``INTER_AREA``, 2x steps  exact box filter on its SIMD fast path:
                                                   360p→320x180 0.02–0.03 ms, 720p→320x180
                                                   0.10 ms (swscale 0.11 / 0.34 ms, same output)
other downscales     swscale AREA, one reused      720p→480x270 0.32 ms, pass 0.89, alias 0.25;
                     ``VideoReformatter`` per      cv2 ``INTER_LINEAR`` 0.21 ms but alias 0.73;
                     tile, ``threads=1``           cv2 ``INTER_AREA`` same quality at 2.4 ms;
                                                   swscale bicubic alias 0.06 at 1.0 ms
upscales             cv2 ``INTER_LINEAR``          no aliasing when enlarging
===================  ============================  ============================================

Shortcuts, in :func:`plan_tile`: a letterboxed picture within ``copy_tolerance`` (or, if
too large, ``crop_tolerance``) of its fitted size is drawn 1:1 (a copy, barred or cropped by
that much: 360x202 or, cropping, 384x216 into a 384x204 tile), and with ``snap`` a downscale
just above an exact 1/2^k is drawn at 1/2^k (360p into a 384x202 tile at 320x180 instead of
360x202: 0.03 instead of 0.14 ms per tile).

A :class:`TilePlan` is computed once per (source size, tile rect, fit mode) and reused for
every frame until one of them changes. cv2 writes straight into the canvas views (``dst=``);
swscale writes a frame of its own, copied into the canvas.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import cast

import av
import cv2
import numpy as np
import numpy.typing as npt
from av.video.plane import VideoPlane
from av.video.reformatter import Interpolation, VideoReformatter

from .layout import Rect

__all__ = [
    "FitMode",
    "Method",
    "TilePlan",
    "TileScaler",
    "plan_tile",
    "plane_array",
    "plane_method",
    "snapped_scale",
]

U8 = npt.NDArray[np.uint8]
Planes = tuple[U8, U8, U8]


class FitMode(enum.StrEnum):
    """How a picture of another aspect ratio fills its tile."""

    LETTERBOX = "letterbox"  # whole picture visible, bars on two sides
    FILL = "fill"  # tile filled, picture cropped on two sides


class Method(enum.StrEnum):
    """How one plane is resized (see the module docstring)."""

    COPY = "copy"
    HALVE = "halve"  # exact 2^k downscale by cv2 INTER_AREA 2x steps
    SWSCALE = "swscale"  # swscale AREA through a reused VideoReformatter
    LINEAR = "linear"  # cv2 INTER_LINEAR (upscales)


def plane_method(sw: int, sh: int, dw: int, dh: int) -> Method:
    """The resize method for a ``sw`` x ``sh`` plane region into ``dw`` x ``dh``."""
    if (sw, sh) == (dw, dh) or dw <= 0 or dh <= 0:
        return Method.COPY
    if dw > sw or dh > sh:
        return Method.LINEAR
    k = 1
    while sw >= dw << k and sh >= dh << k:
        if sw == dw << k and sh == dh << k:
            return Method.HALVE
        k += 1
    return Method.SWSCALE


def _even(n: float) -> int:
    return 2 * round(n / 2)


@dataclass(frozen=True, slots=True)
class TilePlan:
    """Where and how one source size is drawn into one tile.

    ``dst`` is the picture's rect on the canvas (inside the tile, even); ``crop`` the
    source rect (even offsets) that maps onto it. For swscale, the whole source is scaled to
    ``scaled`` and ``window`` (x, y offsets, even) is copied out of it.
    """

    tile: Rect
    fit: FitMode
    src_w: int
    src_h: int
    dst: Rect
    crop: Rect
    luma: Method
    chroma: Method
    scaled: tuple[int, int]
    window: tuple[int, int]
    whole: bool = False  # the crop is the whole source (no slicing needed)
    bar_rects: tuple[Rect, ...] = ()

    def bars(self) -> tuple[Rect, ...]:
        """The parts of the tile the picture leaves uncovered (letterbox bars)."""
        return self.bar_rects


def _bars(t: Rect, d: Rect) -> tuple[Rect, ...]:
    """The parts of ``t`` that ``d`` (inside it) leaves uncovered."""
    out = []
    if d.y > t.y:
        out.append(Rect(t.x, t.y, t.w, d.y - t.y))
    if d.y + d.h < t.y + t.h:
        out.append(Rect(t.x, d.y + d.h, t.w, t.y + t.h - d.y - d.h))
    if d.x > t.x:
        out.append(Rect(t.x, d.y, d.x - t.x, d.h))
    if d.x + d.w < t.x + t.w:
        out.append(Rect(d.x + d.w, d.y, t.x + t.w - d.x - d.w, d.h))
    return tuple(out)


def snapped_scale(scale: float, src_w: int, src_h: int, snap: float) -> float:
    """``scale``, or the exact 1/2^k just below it when that is at most ``snap`` (a fraction)
    smaller and keeps every plane's size exact; see :func:`plan_tile`."""
    if snap <= 0 or scale >= 1:
        return scale
    k = 1
    while 2.0**-k > scale:
        k += 1
    exact = 2.0**-k
    unit = 2 << k  # luma and chroma both divide exactly (chroma is half the luma)
    if exact >= scale * (1 - snap) and src_w % unit == 0 and src_h % unit == 0:
        return exact
    return scale


def plan_tile(
    tile: Rect,
    src_w: int,
    src_h: int,
    fit: FitMode,
    *,
    snap: float = 0.0,
    copy_tolerance: float = 0.0,
    crop_tolerance: float = 0.0,
) -> TilePlan:
    """Plan drawing a ``src_w`` x ``src_h`` picture into ``tile`` with ``fit``.

    ``copy_tolerance`` (letterbox only): a picture that fits and is within this fraction of
    its fitted size is drawn 1:1 (a plane copy, bars a little wider) instead of enlarged by
    almost nothing; ``crop_tolerance``: one at most this fraction too large is drawn 1:1
    with the excess cropped (centred) instead of shrunk by almost nothing. A source sent at
    about the tile's size (202p in the 384x202 and 384x204 tiles of a 1080p 5x5 wall; 216p
    with cropping) then costs a copy instead of a swscale pass, and stays pixel-sharp.

    ``snap`` (letterbox only): a downscale at most this fraction above an exact 1/2^k is
    drawn at 1/2^k instead, an exact box filter several times cheaper than swscale (360p
    into a 384x202 tile: 320x180 instead of 360x202); the picture is that much smaller.
    """
    if src_w < 2 or src_h < 2:
        raise ValueError(f"source {src_w}x{src_h} is too small")
    if fit is FitMode.LETTERBOX:
        scale = min(tile.w / src_w, tile.h / src_h)
        if (1 <= scale <= 1 / (1 - copy_tolerance)) or (1 - crop_tolerance <= scale < 1):
            return _plan_copy(tile, src_w, src_h, fit)
        scale = snapped_scale(scale, src_w, src_h, snap)
        dw = min(tile.w, max(2, _even(src_w * scale)))
        dh = min(tile.h, max(2, _even(src_h * scale)))
        dx = tile.x + ((tile.w - dw) // 2 & ~1)
        dy = tile.y + ((tile.h - dh) // 2 & ~1)
        dst = Rect(dx, dy, dw, dh)
        crop = Rect(0, 0, src_w, src_h)
        scaled, window = (dw, dh), (0, 0)
    else:
        scale = max(tile.w / src_w, tile.h / src_h)
        cw = min(src_w, max(2, _even(tile.w / scale)))
        ch = min(src_h, max(2, _even(tile.h / scale)))
        crop = Rect((src_w - cw) // 2 & ~1, (src_h - ch) // 2 & ~1, cw, ch)
        dst = tile
        sw_, sh_ = max(tile.w, _even(src_w * scale)), max(tile.h, _even(src_h * scale))
        scaled = (sw_, sh_)
        window = ((sw_ - tile.w) // 2 & ~1, (sh_ - tile.h) // 2 & ~1)
    luma = plane_method(crop.w, crop.h, dst.w, dst.h)
    chroma_src = ((crop.w + 1) // 2, (crop.h + 1) // 2)
    chroma = plane_method(*chroma_src, dst.w // 2, dst.h // 2)
    if luma is Method.SWSCALE:
        chroma = Method.SWSCALE
    elif chroma is Method.SWSCALE:
        # Odd-sized chroma next to an exact luma ratio: linear is close enough here.
        chroma = Method.LINEAR
    whole = crop == Rect(0, 0, src_w, src_h)
    return TilePlan(
        tile, fit, src_w, src_h, dst, crop, luma, chroma, scaled, window, whole, _bars(tile, dst)
    )


def _plan_copy(tile: Rect, src_w: int, src_h: int, fit: FitMode) -> TilePlan:
    """Draw the source 1:1, centred, cropped to the tile (even sizes and offsets)."""
    cw, ch = max(2, min(src_w, tile.w) & ~1), max(2, min(src_h, tile.h) & ~1)
    crop = Rect((src_w - cw) // 2 & ~1, (src_h - ch) // 2 & ~1, cw, ch)
    dst = Rect(tile.x + ((tile.w - cw) // 2 & ~1), tile.y + ((tile.h - ch) // 2 & ~1), cw, ch)
    whole = crop == Rect(0, 0, src_w, src_h)
    return TilePlan(
        tile,
        fit,
        src_w,
        src_h,
        dst,
        crop,
        Method.COPY,
        Method.COPY,
        (cw, ch),
        (0, 0),
        whole,
        _bars(tile, dst),
    )


class TileScaler:
    """Draws source pictures into one tile's canvas views; owns that tile's swscale context.

    One per tile, used from the compose thread only.
    """

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._reformatter = VideoReformatter()
        self._staging: av.VideoFrame | None = None
        self._scratch: dict[tuple[int, int], U8] = {}

    def draw(
        self,
        plan: TilePlan,
        src: Planes,
        frame: av.VideoFrame | None,
        dst: Planes,
    ) -> None:
        """Scale ``src`` (the source's Y, U, V; ``frame`` if it came as one) into ``dst``.

        ``dst`` are the canvas views of ``plan.dst`` (luma ``(dh, dw)``, chroma halves).
        """
        if plan.luma is Method.SWSCALE:
            self._swscale(plan, src, frame, dst)
            return
        if plan.whole:
            self._resize(src[0], dst[0], plan.luma)
            self._resize(src[1], dst[1], plan.chroma)
            self._resize(src[2], dst[2], plan.chroma)
            return
        c = plan.crop
        cx, cy = c.x // 2, c.y // 2
        cw, ch = (c.w + 1) // 2, (c.h + 1) // 2
        self._resize(src[0][c.y : c.y + c.h, c.x : c.x + c.w], dst[0], plan.luma)
        self._resize(src[1][cy : cy + ch, cx : cx + cw], dst[1], plan.chroma)
        self._resize(src[2][cy : cy + ch, cx : cx + cw], dst[2], plan.chroma)

    def _resize(self, src: U8, dst: U8, method: Method) -> None:
        h, w = dst.shape
        if h == 0 or w == 0:
            return
        if method is Method.COPY:
            np.copyto(dst, src)
        elif method is Method.LINEAR:
            cv2.resize(src, (w, h), dst=dst, interpolation=cv2.INTER_LINEAR)
        elif method is Method.HALVE:
            while src.shape[1] > 2 * w:
                src = self._halve(src)
            cv2.resize(src, (w, h), dst=dst, interpolation=cv2.INTER_AREA)
        else:
            # Only luma decides swscale; a plane that lands here is a plain downscale.
            cv2.resize(src, (w, h), dst=dst, interpolation=cv2.INTER_AREA)

    def _halve(self, src: U8) -> U8:
        """``src`` box-filtered to half size into a reused scratch plane (no allocation)."""
        shape = (src.shape[0] // 2, src.shape[1] // 2)
        scratch = self._scratch.get(shape)
        if scratch is None:
            scratch = self._scratch[shape] = np.empty(shape, np.uint8)
        cv2.resize(src, (shape[1], shape[0]), dst=scratch, interpolation=cv2.INTER_AREA)
        return scratch

    def _swscale(
        self, plan: TilePlan, src: Planes, frame: av.VideoFrame | None, dst: Planes
    ) -> None:
        if frame is None:
            frame = self._stage(src)
        sw, sh = plan.scaled
        out = self._reformatter.reformat(
            frame,
            width=sw,
            height=sh,
            format="yuv420p",
            interpolation=Interpolation.AREA,
            threads=self.threads,
        )
        wx, wy = plan.window
        for i, plane in enumerate(out.planes):
            d = dst[i]
            h, w = d.shape
            x, y = (wx, wy) if i == 0 else (wx // 2, wy // 2)
            np.copyto(d, plane_array(plane, plane.width, plane.height)[y : y + h, x : x + w])

    def _stage(self, src: Planes) -> av.VideoFrame:
        """Copy raw planes into a reused frame, so swscale can read them."""
        h, w = src[0].shape
        staging = self._staging
        if staging is None or (staging.width, staging.height) != (w, h):
            staging = av.VideoFrame(w, h, "yuv420p")
            self._staging = staging
        for plane, data in zip(staging.planes, src, strict=True):
            np.copyto(plane_array(plane, data.shape[1], data.shape[0]), data)
        return staging


def plane_array(plane: VideoPlane, width: int, height: int) -> U8:
    """A ``(height, width)`` numpy view of a frame plane (no copy; line size respected)."""
    line = plane.line_size
    if line < width or plane.buffer_size < line * height:
        raise ValueError(f"plane {plane.width}x{plane.height} is smaller than {width}x{height}")
    # one constructor call instead of frombuffer + reshape + slice: ~0.6 instead of ~1.5 µs
    return np.ndarray((height, width), np.uint8, cast("bytes", plane), 0, (line, 1))
