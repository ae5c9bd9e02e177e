"""Wall layout geometry: where each tile of a split-screen layout lies on the canvas.

Pure functions, no media imports: the signalling layer calls :func:`validate_custom` and
:func:`tile_rects` to check an operator's layout (PROTOCOL.md ``<layout>``) before it reaches
the compositor (ARCHITECTURE.md, "The wall").

Layout kinds (:data:`TILE_COUNTS`):

- ``"1"``, ``"4"``, ``"9"``, ``"16"``, ``"25"``, ``"36"``: square grids (1x1 … 6x6);
- ``"2"``: two tiles side by side, each half the canvas width and its full height;
- ``"1+5"``: a 3x3 grid basis; one large tile covers the top-left 2x2 cells (2/3 of the
  canvas each way), five small tiles fill the right column (top to bottom) and then the
  bottom row (left to right);
- ``"1+7"``: a 4x4 grid basis; one large tile covers the top-left 3x3 cells, seven small
  tiles fill the right column (top to bottom) and then the bottom row (left to right);
- ``"custom"``: any number of rects (at most :data:`MAX_TILES`), each ``(x, y, w, h)`` as
  fractions of the canvas, in ``[0, 1]``, with positive size, not overlapping.

Every rect is in integer pixels with even ``x``, ``y``, ``w`` and ``h`` (I420 chroma is
subsampled 2x2, so even edges keep each tile's chroma samples its own). Odd canvas sizes are
handled by laying tiles out on the even part of the canvas; the last odd row or column stays
background. Grid edges are placed at ``2 * floor(i * W / (2 n))`` so tiles of one grid tile
the canvas exactly, with sizes differing by at most 2 pixels.

Errors are :class:`LayoutError` (a :class:`ValueError`) with a :class:`LayoutErrorReason`
and the offending data, so one place can map them to the protocol's ``bad_request`` code.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

__all__ = [
    "MAX_TILES",
    "TILE_COUNTS",
    "FracRect",
    "LayoutError",
    "LayoutErrorReason",
    "Rect",
    "tile_rects",
    "validate_custom",
]

#: The most tiles one layout may have (a 6x6 grid).
MAX_TILES = 36

#: Layout kind → number of tiles; ``custom`` takes 1 … :data:`MAX_TILES` rects of its own.
TILE_COUNTS: Mapping[str, int | None] = MappingProxyType(
    {
        "1": 1,
        "2": 2,
        "4": 4,
        "1+5": 6,
        "1+7": 8,
        "9": 9,
        "16": 16,
        "25": 25,
        "36": 36,
        "custom": None,
    }
)

#: A custom tile's rect as fractions of the canvas: ``(x, y, w, h)``.
FracRect = tuple[float, float, float, float]

#: Tolerance for fractions (float noise such as ``0.1 + 0.2``): far below one pixel.
_EPS = 1e-9


class Rect(NamedTuple):
    """A tile's rect on the canvas in pixels; all four values are even."""

    x: int
    y: int
    w: int
    h: int


class LayoutErrorReason(enum.StrEnum):
    """Why a layout was refused."""

    UNKNOWN_KIND = "unknown_kind"
    MISSING_RECTS = "missing_rects"  # custom without rects, or an empty list
    UNEXPECTED_RECTS = "unexpected_rects"  # rects given for a fixed kind
    TOO_MANY_TILES = "too_many_tiles"
    MALFORMED_RECT = "malformed_rect"  # not four finite numbers
    OUT_OF_RANGE = "out_of_range"  # outside [0, 1] or running off the canvas
    EMPTY_RECT = "empty_rect"  # zero or negative size, or under 2 pixels on this canvas
    OVERLAP = "overlap"
    CANVAS_TOO_SMALL = "canvas_too_small"


class LayoutError(ValueError):
    """A layout that cannot be shown; carries the reason and the offending data.

    ``index`` is the offending custom rect's position (``other`` the one it overlaps), or
    ``None`` when the problem is not one rect's.
    """

    def __init__(
        self,
        reason: LayoutErrorReason,
        message: str,
        *,
        kind: str | None = None,
        index: int | None = None,
        other: int | None = None,
        rect: object = None,
    ) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.kind = kind
        self.index = index
        self.other = other
        self.rect = rect


def validate_custom(rects: Sequence[Sequence[float]]) -> tuple[FracRect, ...]:
    """Check custom rects (fractions of the canvas) and return them as float tuples.

    Raises :class:`LayoutError` for: no rects, more than :data:`MAX_TILES`, a rect that is
    not four finite numbers, a value outside ``[0, 1]`` or a rect running off the canvas,
    zero or negative width/height, and two rects overlapping (touching edges are fine).
    """
    if len(rects) == 0:
        raise LayoutError(LayoutErrorReason.MISSING_RECTS, "custom layout without rects")
    if len(rects) > MAX_TILES:
        raise LayoutError(
            LayoutErrorReason.TOO_MANY_TILES,
            f"{len(rects)} tiles, at most {MAX_TILES}",
            kind="custom",
        )
    out: list[FracRect] = []
    for i, raw in enumerate(rects):
        out.append(_check_frac_rect(i, raw))
    for i, a in enumerate(out):
        for j in range(i):
            b = out[j]
            ow = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
            oh = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
            if ow > _EPS and oh > _EPS:
                raise LayoutError(
                    LayoutErrorReason.OVERLAP,
                    f"rect {i} {a} overlaps rect {j} {b}",
                    kind="custom",
                    index=i,
                    other=j,
                    rect=a,
                )
    return tuple(out)


def tile_rects(
    kind: str,
    canvas_w: int,
    canvas_h: int,
    custom: Sequence[Sequence[float]] | None = None,
) -> tuple[Rect, ...]:
    """Pixel rects of the tiles of layout ``kind`` on a ``canvas_w`` x ``canvas_h`` canvas.

    ``custom`` gives the rects of a ``"custom"`` layout (see :func:`validate_custom`) and must
    be ``None`` for every other kind. Results are memoised per (kind, canvas, rects): the
    compositor calls this once per layout change.
    """
    if kind not in TILE_COUNTS:
        raise LayoutError(
            LayoutErrorReason.UNKNOWN_KIND,
            f"unknown layout kind {kind!r}; known: {', '.join(TILE_COUNTS)}",
            kind=kind,
        )
    if canvas_w < 2 or canvas_h < 2:
        raise LayoutError(
            LayoutErrorReason.CANVAS_TOO_SMALL,
            f"canvas {canvas_w}x{canvas_h} is too small",
            kind=kind,
        )
    if kind == "custom":
        if custom is None:
            raise LayoutError(
                LayoutErrorReason.MISSING_RECTS, "custom layout without rects", kind=kind
            )
        return _custom_rects(validate_custom(custom), canvas_w, canvas_h)
    if custom is not None:
        raise LayoutError(
            LayoutErrorReason.UNEXPECTED_RECTS,
            f"layout kind {kind!r} takes no rects",
            kind=kind,
        )
    return _fixed_rects(kind, canvas_w, canvas_h)


def _check_frac_rect(index: int, raw: Sequence[float]) -> FracRect:
    try:
        values = tuple(float(v) for v in raw)
    except (TypeError, ValueError, OverflowError):
        raise LayoutError(
            LayoutErrorReason.MALFORMED_RECT,
            f"rect {index} is not four numbers: {raw!r}",
            kind="custom",
            index=index,
            rect=raw,
        ) from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise LayoutError(
            LayoutErrorReason.MALFORMED_RECT,
            f"rect {index} is not four finite numbers: {raw!r}",
            kind="custom",
            index=index,
            rect=raw,
        )
    x, y, w, h = values
    if w <= 0 or h <= 0:
        raise LayoutError(
            LayoutErrorReason.EMPTY_RECT,
            f"rect {index} has zero or negative size: {values}",
            kind="custom",
            index=index,
            rect=values,
        )
    if not all(-_EPS <= v <= 1 + _EPS for v in values) or x + w > 1 + _EPS or y + h > 1 + _EPS:
        raise LayoutError(
            LayoutErrorReason.OUT_OF_RANGE,
            f"rect {index} {values} is not inside the canvas [0, 1] x [0, 1]",
            kind="custom",
            index=index,
            rect=values,
        )
    return (x, y, w, h)


def _even_edge(fraction: float, extent: int) -> int:
    """The even pixel edge nearest ``fraction`` of ``extent`` (an even number)."""
    edge = 2 * round(fraction * extent / 2)
    return min(max(edge, 0), extent)


@functools.lru_cache(maxsize=256)
def _custom_rects(rects: tuple[FracRect, ...], canvas_w: int, canvas_h: int) -> tuple[Rect, ...]:
    ew, eh = canvas_w & ~1, canvas_h & ~1
    out: list[Rect] = []
    for i, (fx, fy, fw, fh) in enumerate(rects):
        x0, x1 = _even_edge(fx, ew), _even_edge(fx + fw, ew)
        y0, y1 = _even_edge(fy, eh), _even_edge(fy + fh, eh)
        if x1 <= x0 or y1 <= y0:
            raise LayoutError(
                LayoutErrorReason.EMPTY_RECT,
                f"rect {i} {(fx, fy, fw, fh)} is under 2 pixels on a {canvas_w}x{canvas_h} canvas",
                kind="custom",
                index=i,
                rect=(fx, fy, fw, fh),
            )
        out.append(Rect(x0, y0, x1 - x0, y1 - y0))
    # Edges are rounded monotonically, so rects that only touch as fractions only touch in
    # pixels; rects within _EPS of overlapping are caught here.
    for i, a in enumerate(out):
        for j in range(i):
            if _overlaps(a, out[j]):
                raise LayoutError(
                    LayoutErrorReason.OVERLAP,
                    f"rect {i} {a} overlaps rect {j} {out[j]} in pixels",
                    kind="custom",
                    index=i,
                    other=j,
                    rect=rects[i],
                )
    return tuple(out)


def _overlaps(a: Rect, b: Rect) -> bool:
    return min(a.x + a.w, b.x + b.w) > max(a.x, b.x) and min(a.y + a.h, b.y + b.h) > max(a.y, b.y)


def _grid_edges(extent: int, n: int) -> list[int]:
    even = extent & ~1
    return [2 * (i * even // (2 * n)) for i in range(n + 1)]


def _cells(kind: str) -> tuple[int, int, list[tuple[int, int, int, int]]]:
    """Grid basis (columns, rows) and cells ``(col, row, col_span, row_span)`` of ``kind``."""
    if kind == "2":
        return 2, 1, [(0, 0, 1, 1), (1, 0, 1, 1)]
    if kind in ("1+5", "1+7"):
        n = 3 if kind == "1+5" else 4
        big = n - 1
        cells = [(0, 0, big, big)]
        cells += [(big, r, 1, 1) for r in range(big)]
        cells += [(c, big, 1, 1) for c in range(n)]
        return n, n, cells
    side = math.isqrt(int(kind))
    return side, side, [(c, r, 1, 1) for r in range(side) for c in range(side)]


@functools.lru_cache(maxsize=256)
def _fixed_rects(kind: str, canvas_w: int, canvas_h: int) -> tuple[Rect, ...]:
    cols, rows, cells = _cells(kind)
    xs, ys = _grid_edges(canvas_w, cols), _grid_edges(canvas_h, rows)
    out = tuple(
        Rect(xs[c], ys[r], xs[c + cw] - xs[c], ys[r + rh] - ys[r]) for c, r, cw, rh in cells
    )
    if any(rect.w <= 0 or rect.h <= 0 for rect in out):
        raise LayoutError(
            LayoutErrorReason.CANVAS_TOO_SMALL,
            f"canvas {canvas_w}x{canvas_h} is too small for layout {kind!r}",
            kind=kind,
        )
    return out
