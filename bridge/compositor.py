"""The wall compositor: many sites' latest pictures composed into one I420 canvas.

ARCHITECTURE.md, "The wall": feeds on the wall are decoded, composed by a numpy compositor in
I420 planes with cached tile geometry, labels and placeholders, then encoded once per output.

- Planes only: the canvas is one ``(H * 3/2, W)`` uint8 buffer (Y, then U, then V) handed out
  zero-copy with :meth:`av.VideoFrame.from_numpy_buffer`; sources are read as numpy views of
  their planes (line size respected), never converted to RGB.
- Geometry from :mod:`bridge.layout` (computed once per layout and canvas), scaling per plane
  by :mod:`bridge.scaler`, text from :mod:`bridge.labels` (rendered once, cached).
- The banner (会标) and the clock sit in an opaque band across the top of the canvas. By default
  tiles are laid out on the canvas below it, so the band never hides video; with
  ``banner_overlay`` the band covers the top of the top row instead and is redrawn whenever a
  tile under it is, which keeps the layout's exact tile sizes (a 1080p canvas of 36 tiles
  stays 320x180: an exact 2x of 360p, the cheapest scale; see the benchmark).
- Incremental: a tile is redrawn only when what it shows changed (its source's generation,
  its status, the floor, the layout). The canvas is a ring of ``buffers`` images; each one
  remembers what it holds per tile, so a frame handed out stays intact for ``buffers - 1``
  further :meth:`Compositor.compose` calls (the contract with the encoder). A tile that the
  previous canvas already shows is copied from it (a plane copy instead of a scale: sources
  slower than the output, stills, placeholders); letterbox bars are filled once per canvas
  and plan (again only where a label blends onto them).
- Live cost (``benchmarks/wall_bench.py``, 25 x 360p into the banded ``25`` layout):
  ~8 ms per frame against ~5 ms composing back to back and ~3 ms in
  ``benchmarks/compositor_bench.py``. The bench's 3 ms is 36 tiles at an exact 2x (a box
  filter, 0.03 ms per tile); here every tile is a 0.56x swscale pass (0.14 ms per tile, half
  the time). The rest is the frame rate itself: composing every 33 ms on a core that idles
  in between costs 6.9 instead of 5.0 ms per frame (same code, a 20 ms sleep between
  frames). ``snap_scale`` (opt-in: 360p drawn at 320x180) composes in 2.0 ms; sources at the
  tile's size (``copy_tolerance``, ``crop_tolerance``) in ~0.8–1.8 ms.
- Deterministic: no clock reads. :meth:`Compositor.push` and :meth:`Compositor.compose` take
  ``now`` (seconds, monotonic); a source silent for ``stall_after_s`` shows "无信号 no signal",
  a source never seen (or removed) "离线 offline".
- Robust: a malformed frame or a failure while drawing one tile shows that tile as no signal
  and is logged once per episode; composition goes on.

Threading contract: :meth:`push`, :meth:`remove`, :meth:`set_layout`, :meth:`set_banner` and
:meth:`set_floor` may be called from any thread (decoder threads, the event loop); they hold a
lock only to swap a reference. :meth:`compose` never waits for a source: it snapshots the
latest deposits and composes outside that lock; concurrent compose calls are serialised.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import av
import numpy as np
import numpy.typing as npt

from .labels import Bitmap, LabelConfig, TextRenderer, blend_onto, rgb_to_yuv
from .layout import MAX_TILES, LayoutError, LayoutErrorReason, Rect, tile_rects
from .scaler import FitMode, TilePlan, TileScaler, plan_tile, plane_array

__all__ = [
    "NO_SIGNAL_TEXT",
    "OFFLINE_TEXT",
    "Compositor",
    "CompositorConfig",
    "CompositorStats",
    "FitMode",
    "SourceFrame",
    "TileSpec",
    "TileStatus",
    "band_height",
    "canvas_tile_rects",
]

logger = logging.getLogger(__name__)

U8 = npt.NDArray[np.uint8]
Planes = tuple[U8, U8, U8]
#: What a source deposits: a decoded ``yuv420p`` frame, or raw ``(Y, U, V)`` planes.
SourceFrame = av.VideoFrame | tuple[U8, U8, U8]

OFFLINE_TEXT = "离线 offline"
NO_SIGNAL_TEXT = "无信号 no signal"


class TileStatus(enum.StrEnum):
    """What a tile shows."""

    VIDEO = "video"
    OFFLINE = "offline"  # no frame ever deposited, or the source was removed
    NO_SIGNAL = "no_signal"  # silent for stall_after_s, or its last frame was malformed
    EMPTY = "empty"  # no source assigned


@dataclass(frozen=True, slots=True)
class CompositorConfig:
    """One wall output's compositor settings (canvas size even, at least 16 x 16)."""

    width: int = 1920
    height: int = 1080
    fit: FitMode = FitMode.LETTERBOX
    stall_after_s: float = 2.0
    buffers: int = 3
    show_clock: bool = True
    show_labels: bool = True
    band_height: float = 0.06  # of the canvas height, when a banner or the clock is shown
    banner_overlay: bool = False  # band drawn over the top tiles instead of above them
    label_height: float = 0.13  # of the tile height, clamped to [16, 48] pixels
    background: tuple[int, int, int] = (0, 0, 0)
    floor_border: tuple[int, int, int] = (230, 30, 30)
    scale_threads: int = 1
    # letterboxed downscales at most this fraction above an exact 1/2^k are drawn at 1/2^k:
    # smaller pictures, several times cheaper (see bridge.scaler.plan_tile); 0: exact fit
    snap_scale: float = 0.0
    # a picture that fits and is within this fraction of its fitted size is drawn 1:1 (bars
    # that much wider) instead of enlarged by almost nothing; one at most crop_tolerance too
    # large is drawn 1:1 with the excess cropped (opt-in: it cuts the picture's edges, where
    # cameras often print their clock) instead of shrunk (see bridge.scaler.plan_tile)
    copy_tolerance: float = 0.07
    crop_tolerance: float = 0.0
    labels: LabelConfig = field(default_factory=LabelConfig)

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(
                f"canvas must be even and at least 16x16, got {self.width}x{self.height}"
            )
        if self.buffers < 1:
            raise ValueError("buffers must be at least 1")
        if not 0 <= self.band_height < 0.5:
            raise ValueError(f"band_height must be in [0, 0.5), got {self.band_height}")
        if self.stall_after_s <= 0:
            raise ValueError(f"stall_after_s must be positive, got {self.stall_after_s}")
        if not 0 <= self.snap_scale < 0.5:
            raise ValueError(f"snap_scale must be in [0, 0.5), got {self.snap_scale}")
        if not 0 <= self.copy_tolerance < 0.5 or not 0 <= self.crop_tolerance < 0.5:
            raise ValueError("copy_tolerance and crop_tolerance must be in [0, 0.5)")


@dataclass(frozen=True, slots=True)
class TileSpec:
    """One tile's content: a source (or none) and its label; ``fit`` overrides the config."""

    source_id: str | None
    label: str = ""
    fit: FitMode | None = None


@dataclass(slots=True)
class CompositorStats:
    """Counters for metrics and tests (a copy is returned by :attr:`Compositor.stats`)."""

    frames: int = 0
    tiles_drawn: int = 0
    tiles_skipped: int = 0
    band_drawn: int = 0
    malformed_frames: int = 0
    draw_errors: int = 0
    tile_draws: list[int] = field(default_factory=list)
    tiles_copied: int = 0  # taken from the previous canvas instead of drawn again


class _Deposit(NamedTuple):
    planes: Planes | None  # None: the frame was malformed
    frame: av.VideoFrame | None
    generation: int
    at: float


@dataclass(frozen=True, slots=True)
class _Layout:
    version: int
    kind: str
    custom: tuple[tuple[float, float, float, float], ...] | None
    tiles: tuple[TileSpec, ...]


@dataclass(slots=True)
class _Canvas:
    buffer: U8
    planes: Planes
    layout_key: object = None
    band_key: object = None
    tile_keys: list[object] = field(default_factory=list)
    tile_bars: list[object] = field(default_factory=list)  # (plan, on floor) whose bars are intact
    view_cache: dict[Rect, Planes] = field(default_factory=dict)

    def views(self, rect: Rect) -> Planes:
        """The canvas views of ``rect`` (cached: the same rects are drawn every frame)."""
        views = self.view_cache.get(rect)
        if views is None:
            if len(self.view_cache) > 4 * MAX_TILES + 64:
                self.view_cache.clear()
            views = self.view_cache[rect] = _views(self.planes, rect)
        return views


@dataclass(slots=True)
class _TileState:
    rect: Rect
    scaler: TileScaler
    plan: TilePlan | None = None
    label: tuple[str, Bitmap, Rect] | None = None  # text, bitmap, where (cached)
    # the parts of the plan's bars under the label (blended onto them on every draw)
    label_bars: tuple[TilePlan, Rect, tuple[Rect, ...]] | None = None

    def bars_under_label(self, plan: TilePlan) -> tuple[Rect, ...]:
        label = self.label
        if label is None:
            return ()
        cached = self.label_bars
        if cached is None or cached[0] is not plan or cached[1] != label[2]:
            parts = tuple(r for bar in plan.bars() if (r := _intersection(bar, label[2])))
            cached = self.label_bars = (plan, label[2], parts)
        return cached[2]


class Compositor:
    """Composes the wall (see the module docstring for the contract)."""

    def __init__(self, config: CompositorConfig | None = None) -> None:
        self.config = config or CompositorConfig()
        cfg = self.config
        self.text = TextRenderer(cfg.labels)
        self._lock = threading.Lock()
        self._compose_lock = threading.Lock()
        self._sources: dict[str, _Deposit] = {}
        self._generation = 0
        self._layout = _Layout(0, "1", None, (TileSpec(None),))
        self._banner = ""
        self._floor: str | None = None
        self._bg = rgb_to_yuv(cfg.background)
        self._border = rgb_to_yuv(cfg.floor_border)
        w, h = cfg.width, cfg.height
        self._canvases = [self._new_canvas(w, h) for _ in range(cfg.buffers)]
        self._next = 0
        self._previous: _Canvas | None = None  # the canvas handed out last
        self._geometry_key: object = None
        self._tiles: list[_TileState] = []
        self._band = 0
        self._tile_draws: list[int] = []
        self._bad: dict[str, int] = {}  # source → generation that failed to draw
        self._clock_advance: dict[int, int] = {}  # band height → clock glyph advance
        self._stats = CompositorStats()

    def _new_canvas(self, w: int, h: int) -> _Canvas:
        buffer = np.empty((h * 3 // 2, w), np.uint8)
        y = buffer[:h]
        chroma = buffer[h:].reshape(2, h // 2, w // 2)
        return _Canvas(buffer, (y, chroma[0], chroma[1]))

    # -- control (any thread) --------------------------------------------------------------

    def set_layout(
        self,
        kind: str,
        custom_rects: Sequence[Sequence[float]] | None,
        tiles: Sequence[TileSpec],
    ) -> None:
        """Show ``tiles`` in layout ``kind``; raises :class:`LayoutError` if it is invalid.

        The layout is checked on the whole canvas and on the canvas below the band, so it
        cannot fail later when a banner is set.
        """
        cfg = self.config
        tile_rects(kind, cfg.width, cfg.height - self._band_height(), custom_rects)
        rects = tile_rects(kind, cfg.width, cfg.height, custom_rects)
        if len(tiles) > len(rects):
            raise LayoutError(
                LayoutErrorReason.TOO_MANY_TILES,
                f"{len(tiles)} tiles for a {len(rects)}-tile layout",
                kind=kind,
            )
        custom = None
        if custom_rects is not None:
            custom = tuple(
                (float(r[0]), float(r[1]), float(r[2]), float(r[3])) for r in custom_rects
            )
        padded = tuple(tiles) + tuple(TileSpec(None) for _ in range(len(rects) - len(tiles)))
        with self._lock:
            self._layout = _Layout(self._layout.version + 1, kind, custom, padded[:MAX_TILES])

    def set_banner(self, text: str) -> None:
        """Show ``text`` as the banner (会标); an empty text hides it."""
        with self._lock:
            self._banner = text

    def set_floor(self, source_id: str | None) -> None:
        """Mark the tiles showing ``source_id`` with the floor border (``None``: nobody)."""
        with self._lock:
            self._floor = source_id

    def push(self, source_id: str, frame: SourceFrame, now: float) -> None:
        """Deposit ``frame`` as ``source_id``'s latest picture (any thread, never blocks long).

        The compositor keeps a reference and reads it later: the caller must not write to
        raw planes after handing them over. A malformed frame is logged and shows the tile as
        no signal until a good frame arrives; it never raises.
        """
        planes: Planes | None
        av_frame: av.VideoFrame | None = None
        try:
            if isinstance(frame, av.VideoFrame):
                av_frame = _as_yuv420p(frame)
                planes = _frame_planes(av_frame)
            else:
                planes = _check_planes(frame)
        except Exception as exc:  # a decoder thread must never die of a bad frame
            planes, av_frame = None, None
            with self._lock:
                previous = self._sources.get(source_id)
                self._stats.malformed_frames += 1
            if previous is None or previous.planes is not None:
                logger.warning("malformed frame from %s: %s", source_id, exc)
        with self._lock:
            self._generation += 1
            self._sources[source_id] = _Deposit(planes, av_frame, self._generation, now)

    def remove(self, source_id: str) -> None:
        """Forget ``source_id``'s pictures: its tiles show it offline."""
        with self._lock:
            self._sources.pop(source_id, None)

    @property
    def stats(self) -> CompositorStats:
        with self._lock:
            s = self._stats
            return CompositorStats(
                frames=s.frames,
                tiles_drawn=s.tiles_drawn,
                tiles_skipped=s.tiles_skipped,
                band_drawn=s.band_drawn,
                malformed_frames=s.malformed_frames,
                draw_errors=s.draw_errors,
                tile_draws=list(s.tile_draws),
                tiles_copied=s.tiles_copied,
            )

    @property
    def tiles(self) -> tuple[TileSpec, ...]:
        """The current layout's tiles (empty ones included)."""
        return self._layout.tiles

    def tile_rects(self) -> tuple[Rect, ...]:
        """The tiles' rects as last composed (below the band, if shown and not overlaid)."""
        return tuple(t.rect for t in self._tiles)

    # -- composing (one thread at a time) --------------------------------------------------

    def compose(self, now: float, clock_text: str | None = None) -> av.VideoFrame:
        """Compose the canvas from each source's latest picture as of ``now``.

        ``clock_text`` (e.g. ``"2026-11-29 08:15:30"``) is drawn at the band's right end when
        the clock is shown; the caller formats it, so the core reads no clock.
        """
        with self._compose_lock:
            with self._lock:
                layout, banner, floor = self._layout, self._banner, self._floor
                sources = dict(self._sources)
            canvas = self._canvases[self._next]
            self._next = (self._next + 1) % len(self._canvases)
            show_band = bool(banner) or self.config.show_clock
            self._update_geometry(layout, show_band)
            if canvas.layout_key != self._geometry_key:
                self._fill(canvas.planes, Rect(0, 0, self.config.width, self.config.height))
                canvas.layout_key = self._geometry_key
                canvas.view_cache.clear()
                canvas.band_key = None
                canvas.tile_keys = [None] * len(self._tiles)
                canvas.tile_bars = [None] * len(self._tiles)
            drawn = skipped = errors = copied = 0
            under_band = False
            previous = self._previous
            if previous is canvas or (
                previous is not None and previous.layout_key != self._geometry_key
            ):
                previous = None
            for index, (spec, tile) in enumerate(zip(layout.tiles, self._tiles, strict=True)):
                status, deposit = self._status(spec, sources, now)
                key = (status, deposit.generation if deposit else None, spec.source_id == floor)
                if canvas.tile_keys[index] == key:
                    skipped += 1
                    continue
                if previous is not None and previous.tile_keys[index] == key:
                    # the last canvas shows it already: a plane copy instead of a redraw
                    # (sources slower than the output, stills, placeholders)
                    for src, dst in zip(
                        previous.views(tile.rect), canvas.views(tile.rect), strict=True
                    ):
                        np.copyto(dst, src)
                    canvas.tile_keys[index] = key
                    canvas.tile_bars[index] = previous.tile_bars[index]
                    copied += 1
                    under_band = under_band or tile.rect.y < self._band
                    continue
                if not self._draw_tile(canvas, index, spec, tile, status, deposit, key[2]):
                    errors += 1
                    key = (TileStatus.NO_SIGNAL, key[1], key[2])
                canvas.tile_keys[index] = key
                self._tile_draws[index] += 1
                drawn += 1
                under_band = under_band or tile.rect.y < self._band
            band_key = (banner, clock_text if self.config.show_clock else None)
            band_drawn = 0
            if self._band and (canvas.band_key != band_key or under_band):
                self._draw_band(canvas, banner, band_key[1])
                canvas.band_key = band_key
                band_drawn = 1
            with self._lock:
                s = self._stats
                s.frames += 1
                s.tiles_drawn += drawn
                s.tiles_skipped += skipped
                s.band_drawn += band_drawn
                s.draw_errors += errors
                s.tiles_copied += copied
                s.tile_draws = list(self._tile_draws)
            self._previous = canvas
            return av.VideoFrame.from_numpy_buffer(canvas.buffer, format="yuv420p")

    def _band_height(self) -> int:
        return band_height(self.config)

    def _update_geometry(self, layout: _Layout, show_band: bool) -> None:
        cfg = self.config
        band = self._band_height() if show_band else 0
        key = (layout.version, band)
        if key == self._geometry_key:
            return
        rects = canvas_tile_rects(cfg, layout.kind, layout.custom, show_band=show_band)
        self._tiles = [_TileState(r, TileScaler(cfg.scale_threads)) for r in rects]
        self._tile_draws = [0] * len(rects)
        self._band = band
        self._geometry_key = key

    def _status(
        self, spec: TileSpec, sources: dict[str, _Deposit], now: float
    ) -> tuple[TileStatus, _Deposit | None]:
        if spec.source_id is None:
            return TileStatus.EMPTY, None
        deposit = sources.get(spec.source_id)
        if deposit is None:
            return TileStatus.OFFLINE, None
        if (
            deposit.planes is None
            or now - deposit.at >= self.config.stall_after_s
            or self._bad.get(spec.source_id) == deposit.generation
        ):
            return TileStatus.NO_SIGNAL, deposit
        return TileStatus.VIDEO, deposit

    # -- drawing ---------------------------------------------------------------------------

    def _draw_tile(
        self,
        canvas: _Canvas,
        index: int,
        spec: TileSpec,
        tile: _TileState,
        status: TileStatus,
        deposit: _Deposit | None,
        on_floor: bool,
    ) -> bool:
        """Draw one tile; False if its picture could not be drawn (shown as no signal)."""
        ok = True
        bars = canvas.tile_bars[index]
        canvas.tile_bars[index] = None  # until a picture is drawn in full
        if status is TileStatus.VIDEO:
            assert deposit is not None and deposit.planes is not None
            try:
                canvas.tile_bars[index] = self._draw_video(
                    canvas, spec, tile, deposit.planes, deposit.frame, bars, on_floor
                )
            except Exception:
                assert spec.source_id is not None
                if self._bad.get(spec.source_id) is None:
                    logger.warning(
                        "cannot draw %s into tile %s", spec.source_id, tile.rect, exc_info=True
                    )
                self._bad[spec.source_id] = deposit.generation
                status, ok = TileStatus.NO_SIGNAL, False
            else:
                if spec.source_id is not None:
                    self._bad.pop(spec.source_id, None)
        if status is TileStatus.EMPTY:
            self._fill(canvas.planes, tile.rect)
            self._draw_label(canvas, spec, tile)
        elif status is not TileStatus.VIDEO:
            offline = status is TileStatus.OFFLINE
            bitmap = self.text.placeholder(
                spec.label or (spec.source_id or ""),
                OFFLINE_TEXT if offline else NO_SIGNAL_TEXT,
                tile.rect.w,
                tile.rect.h,
                offline=offline,
            )
            blend_onto(bitmap, *canvas.views(tile.rect))
        if on_floor and status is not TileStatus.EMPTY:
            self._draw_border(canvas, tile.rect)
        return ok

    def _draw_video(
        self,
        canvas: _Canvas,
        spec: TileSpec,
        tile: _TileState,
        planes: Planes,
        frame: av.VideoFrame | None,
        bars: object,
        on_floor: bool,
    ) -> tuple[TilePlan, bool]:
        """Draw the picture, its bars (unless this canvas holds them intact from the same
        plan: then only where the label blends onto them) and the label; returns what the
        bars now hold."""
        h, w = planes[0].shape
        plan = tile.plan
        fit = spec.fit or self.config.fit
        if plan is None or (plan.src_w, plan.src_h, plan.tile, plan.fit) != (w, h, tile.rect, fit):
            if plan is not None and (plan.src_w, plan.src_h) != (w, h):
                logger.info(
                    "%s changed resolution %dx%d -> %dx%d",
                    spec.source_id,
                    plan.src_w,
                    plan.src_h,
                    w,
                    h,
                )
            plan = plan_tile(
                tile.rect,
                w,
                h,
                fit,
                snap=self.config.snap_scale,
                copy_tolerance=self.config.copy_tolerance,
                crop_tolerance=self.config.crop_tolerance,
            )
            tile.plan = plan
        key = (plan, on_floor)
        if bars != key:
            for bar in plan.bars():
                self._fill_views(canvas.views(bar), self._bg)
        elif self.config.show_labels and spec.label:
            for part in tile.bars_under_label(plan):
                self._fill_views(canvas.views(part), self._bg)
        tile.scaler.draw(plan, planes, frame, canvas.views(plan.dst))
        self._draw_label(canvas, spec, tile)
        return key

    def _draw_label(self, canvas: _Canvas, spec: TileSpec, tile: _TileState) -> None:
        """The site's name at the tile's bottom-left: luma blended, chroma neutral."""
        if not (self.config.show_labels and spec.label):
            return
        cached = tile.label
        if cached is None or cached[0] != spec.label:
            rect = tile.rect
            height = 2 * round(min(48, max(16, rect.h * self.config.label_height)) / 2)
            margin = 2 * max(1, height // 8)
            if rect.h < height + 2 * margin or rect.w < 4 * margin + 16:
                return
            bitmap = self.text.label(spec.label, height, rect.w - 2 * margin)
            where = Rect(
                rect.x + margin,
                rect.y + rect.h - margin - bitmap.height,
                bitmap.width,
                bitmap.height,
            )
            cached = tile.label = (spec.label, bitmap, where)
        blend_onto(cached[1], *canvas.views(cached[2]))

    def _draw_border(self, canvas: _Canvas, rect: Rect) -> None:
        b = 2 * max(1, round(min(rect.w, rect.h) / 90))
        b = min(b, rect.w // 2 & ~1, rect.h // 2 & ~1)
        if b <= 0:
            return
        x, y, w, h = rect
        for side in (
            Rect(x, y, w, b),
            Rect(x, y + h - b, w, b),
            Rect(x, y, b, h),
            Rect(x + w - b, y, b, h),
        ):
            self._fill(canvas.planes, side, self._border)

    def _draw_band(self, canvas: _Canvas, banner: str, clock_text: str | None) -> None:
        w, band = self.config.width, self._band
        bitmap = self.text.banner(banner, w, band)
        blend_onto(bitmap, *_views(canvas.planes, Rect(0, 0, w, band)))
        if not clock_text:
            return
        advance = self._clock_advance.get(band)
        if advance is None:  # measured once per height: shaping ten digits every second
            advance = self._clock_advance[band] = self.text.clock_advance(band)
        margin = 2 * max(1, band // 4)
        x = w - margin - advance * len(clock_text)
        for char in clock_text:
            if x >= 0:
                glyph = self.text.glyph(char, band, advance)
                blend_onto(glyph, *_views(canvas.planes, Rect(x, 0, advance, band)))
            x += advance

    def _fill(self, planes: Planes, rect: Rect, colour: tuple[int, int, int] | None = None) -> None:
        self._fill_views(_views(planes, rect), colour or self._bg)

    @staticmethod
    def _fill_views(views: Planes, colour: tuple[int, int, int]) -> None:
        for plane, value in zip(views, colour, strict=True):
            plane.fill(value)


def band_height(config: CompositorConfig) -> int:
    """The height in pixels of the banner/clock band across the top of the canvas."""
    return 2 * round(config.height * config.band_height / 2)


def canvas_tile_rects(
    config: CompositorConfig,
    kind: str,
    custom: Sequence[Sequence[float]] | None = None,
    *,
    show_band: bool | None = None,
) -> tuple[Rect, ...]:
    """The tiles' rects exactly as a :class:`Compositor` with ``config`` draws them.

    Pure (no compositor is built): what :meth:`Compositor.tile_rects` returns after a compose
    of this layout. ``show_band``: whether the band is shown (a banner is set or the clock is
    on); ``None`` means "as far as the config says" (``config.show_clock``). Unless
    ``banner_overlay``, the tiles are laid out on the canvas below the band. Raises
    :class:`~bridge.layout.LayoutError` like :func:`bridge.layout.tile_rects`.
    """
    if show_band is None:
        show_band = config.show_clock
    top = band_height(config) if show_band and not config.banner_overlay else 0
    rects = tile_rects(kind, config.width, config.height - top, custom)
    return tuple(Rect(r.x, r.y + top, r.w, r.h) for r in rects)


def _intersection(a: Rect, b: Rect) -> Rect | None:
    """The overlap of ``a`` and ``b`` with even edges (covering it), or None."""
    x0, y0 = max(a.x, b.x) & ~1, max(a.y, b.y) & ~1
    x1 = min(a.x + a.w, (b.x + b.w + 1) & ~1)
    y1 = min(a.y + a.h, (b.y + b.h + 1) & ~1)
    if x1 <= x0 or y1 <= y0:
        return None
    return Rect(x0, y0, x1 - x0, y1 - y0)


def _views(planes: Planes, rect: Rect) -> Planes:
    x, y, w, h = rect
    cx, cy, cw, ch = x // 2, y // 2, w // 2, h // 2
    return (
        planes[0][y : y + h, x : x + w],
        planes[1][cy : cy + ch, cx : cx + cw],
        planes[2][cy : cy + ch, cx : cx + cw],
    )


def _as_yuv420p(frame: av.VideoFrame) -> av.VideoFrame:
    name = frame.format.name
    if name in ("yuv420p", "yuvj420p"):
        return frame
    return frame.reformat(format="yuv420p")


def _frame_planes(frame: av.VideoFrame) -> Planes:
    """Numpy views of a yuv420p frame's planes (no copy; line size respected)."""
    w, h = frame.width, frame.height
    if w < 2 or h < 2:
        raise ValueError(f"frame {w}x{h} is too small")
    cw, ch = (w + 1) // 2, (h + 1) // 2
    y, u, v = frame.planes
    return plane_array(y, w, h), plane_array(u, cw, ch), plane_array(v, cw, ch)


def _check_planes(planes: object) -> Planes:
    """Validate raw ``(Y, U, V)`` planes: uint8, 2-D, chroma half the luma (rounded up)."""
    if not isinstance(planes, tuple | list) or len(planes) != 3:
        raise ValueError("expected an av.VideoFrame or a (Y, U, V) tuple")
    y, u, v = planes
    for p in (y, u, v):
        if not isinstance(p, np.ndarray) or p.dtype != np.uint8 or p.ndim != 2:
            raise ValueError("planes must be 2-D uint8 numpy arrays")
    h, w = y.shape
    if w < 2 or h < 2:
        raise ValueError(f"luma {w}x{h} is too small")
    want = ((h + 1) // 2, (w + 1) // 2)
    if u.shape != want or v.shape != want:
        raise ValueError(f"chroma {u.shape} / {v.shape} does not match luma {y.shape}")
    return tuple(p if p.strides[1] == 1 else np.ascontiguousarray(p) for p in (y, u, v))  # type: ignore[return-value]
