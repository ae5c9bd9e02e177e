"""Wall layout geometry (bridge/layout.py): every kind, custom rects, odd canvases, errors."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.layout import (
    MAX_TILES,
    TILE_COUNTS,
    LayoutError,
    LayoutErrorReason,
    Rect,
    tile_rects,
    validate_custom,
)
from signalling.model import LAYOUT_KINDS

FIXED_KINDS = [k for k, n in TILE_COUNTS.items() if n is not None]
CANVASES = [(1920, 1080), (3840, 2160), (1280, 720), (1921, 1081), (1279, 719), (101, 57)]


def _check_geometry(rects: tuple[Rect, ...], w: int, h: int) -> None:
    for r in rects:
        assert all(v % 2 == 0 for v in r), r
        assert r.w > 0 and r.h > 0, r
        assert r.x >= 0 and r.y >= 0 and r.x + r.w <= w and r.y + r.h <= h, (r, w, h)
    for a, b in itertools.combinations(rects, 2):
        ow = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
        oh = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
        assert ow <= 0 or oh <= 0, (a, b)


def test_tile_counts_match_the_protocol_kinds() -> None:
    assert dict(TILE_COUNTS) == LAYOUT_KINDS


@pytest.mark.parametrize("kind", FIXED_KINDS)
@pytest.mark.parametrize(("w", "h"), CANVASES)
def test_fixed_kinds_tile_the_even_canvas(kind: str, w: int, h: int) -> None:
    rects = tile_rects(kind, w, h)
    assert len(rects) == TILE_COUNTS[kind]
    _check_geometry(rects, w, h)
    # Fixed layouts cover the even part of the canvas exactly.
    assert sum(r.w * r.h for r in rects) == (w & ~1) * (h & ~1)


@pytest.mark.parametrize(("kind", "side"), [("4", 2), ("9", 3), ("16", 4), ("25", 5)])
def test_square_grids_are_row_major(kind: str, side: int) -> None:
    rects = tile_rects(kind, 1920, 1080)
    assert rects[0] == Rect(0, 0, (1920 // side) & ~1, (1080 // side) & ~1)
    assert rects[1].x > rects[0].x and rects[1].y == 0
    assert rects[side].x == 0 and rects[side].y > 0


def test_exact_grid_sizes() -> None:
    assert set(tile_rects("36", 1920, 1080)) == {
        Rect(320 * c, 180 * r, 320, 180) for r in range(6) for c in range(6)
    }
    assert tile_rects("2", 1920, 1080) == (Rect(0, 0, 960, 1080), Rect(960, 0, 960, 1080))
    assert tile_rects("16", 3840, 2160)[5] == Rect(960, 540, 960, 540)


def test_one_plus_five() -> None:
    rects = tile_rects("1+5", 1920, 1080)
    assert rects[0] == Rect(0, 0, 1280, 720)  # 2/3 of the canvas each way
    assert rects[1:] == (
        Rect(1280, 0, 640, 360),
        Rect(1280, 360, 640, 360),
        Rect(0, 720, 640, 360),
        Rect(640, 720, 640, 360),
        Rect(1280, 720, 640, 360),
    )


def test_one_plus_seven() -> None:
    rects = tile_rects("1+7", 1920, 1080)
    assert rects[0] == Rect(0, 0, 1440, 810)  # 3/4 of the canvas each way
    assert len(rects) == 8
    assert all(r.w == 480 for r in rects[1:])
    assert [r.x for r in rects[4:]] == [0, 480, 960, 1440]
    assert [r.y for r in rects[1:4]] == [0, 270, 540]


def test_odd_canvas_leaves_the_last_row_and_column() -> None:
    rects = tile_rects("9", 1921, 1081)
    assert max(r.x + r.w for r in rects) == 1920
    assert max(r.y + r.h for r in rects) == 1080


def test_sizes_differ_by_at_most_two_pixels() -> None:
    rects = tile_rects("36", 1366, 766)
    assert max(r.w for r in rects) - min(r.w for r in rects) <= 2
    assert max(r.h for r in rects) - min(r.h for r in rects) <= 2


def test_custom_rects_map_to_even_pixels() -> None:
    rects = tile_rects(
        "custom", 1920, 1080, [(0, 0, 0.5, 1), (0.5, 0, 0.5, 0.5), (0.5, 0.5, 0.25, 0.5)]
    )
    assert rects == (Rect(0, 0, 960, 1080), Rect(960, 0, 960, 540), Rect(960, 540, 480, 540))


def test_custom_touching_rects_share_an_edge_on_odd_canvas() -> None:
    third = 1 / 3
    rects = tile_rects("custom", 1001, 777, [(0, 0, third, 1), (third, 0, 1 - third, 1)])
    _check_geometry(rects, 1001, 777)
    assert rects[0].x + rects[0].w == rects[1].x
    assert rects[1].x + rects[1].w == 1000


def test_custom_float_noise_is_not_an_overlap() -> None:
    rects = tile_rects("custom", 1920, 1080, [(0, 0, 0.1 + 0.2, 1), (0.3, 0, 0.7, 1)])
    _check_geometry(rects, 1920, 1080)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 9), st.integers(0, 9), st.integers(1, 10), st.integers(1, 10)
        ).filter(lambda t: t[0] + t[2] <= 10 and t[1] + t[3] <= 10),
        min_size=1,
        max_size=8,
    ),
    st.integers(80, 4000),
    st.integers(80, 2200),
)
def test_valid_custom_layouts_map_to_valid_geometry(
    cells: list[tuple[int, int, int, int]], w: int, h: int
) -> None:
    fracs = [(x / 10, y / 10, cw / 10, ch / 10) for x, y, cw, ch in cells]
    try:
        validate_custom(fracs)
    except LayoutError as exc:
        assert exc.reason is LayoutErrorReason.OVERLAP
        return
    _check_geometry(tile_rects("custom", w, h, fracs), w, h)


@pytest.mark.parametrize(
    ("rects", "reason", "index"),
    [
        ([(-0.1, 0, 0.5, 0.5)], LayoutErrorReason.OUT_OF_RANGE, 0),
        ([(0, 0, 0.5, 0.5), (0.6, 0, 0.5, 0.5)], LayoutErrorReason.OUT_OF_RANGE, 1),
        ([(0, 1.5, 0.5, 0.5)], LayoutErrorReason.OUT_OF_RANGE, 0),
        ([(0, 0, 0, 0.5)], LayoutErrorReason.EMPTY_RECT, 0),
        ([(0, 0, 0.5, -0.5)], LayoutErrorReason.EMPTY_RECT, 0),
        ([(0, 0, 0.5, 0.5), (0.25, 0.25, 0.5, 0.5)], LayoutErrorReason.OVERLAP, 1),
        ([(0, 0, 0.5, float("nan"))], LayoutErrorReason.MALFORMED_RECT, 0),
        ([(0, 0, 0.5)], LayoutErrorReason.MALFORMED_RECT, 0),
        ([(0, 0, "a", 1)], LayoutErrorReason.MALFORMED_RECT, 0),
    ],
)
def test_bad_custom_rects(
    rects: list[tuple[object, ...]], reason: LayoutErrorReason, index: int
) -> None:
    with pytest.raises(LayoutError) as info:
        validate_custom(rects)  # type: ignore[arg-type]
    assert info.value.reason is reason
    assert info.value.index == index
    assert isinstance(info.value, ValueError)
    assert reason.value in str(info.value)
    with pytest.raises(LayoutError):
        tile_rects("custom", 1920, 1080, rects)  # type: ignore[arg-type]


def test_overlap_names_both_rects() -> None:
    with pytest.raises(LayoutError) as info:
        validate_custom([(0, 0, 0.5, 0.5), (0.5, 0, 0.5, 0.5), (0.4, 0.4, 0.2, 0.2)])
    assert (info.value.index, info.value.other) == (2, 0)


def test_too_many_tiles() -> None:
    grid = [(c / 7, r / 7, 1 / 7, 1 / 7) for r in range(7) for c in range(7)]
    with pytest.raises(LayoutError) as info:
        validate_custom(grid[: MAX_TILES + 1])
    assert info.value.reason is LayoutErrorReason.TOO_MANY_TILES
    assert len(tile_rects("custom", 1920, 1080, grid[:MAX_TILES])) == MAX_TILES


def test_unknown_kind() -> None:
    with pytest.raises(LayoutError) as info:
        tile_rects("3x3", 1920, 1080)
    assert info.value.reason is LayoutErrorReason.UNKNOWN_KIND
    assert info.value.kind == "3x3"


def test_custom_needs_rects_and_fixed_kinds_refuse_them() -> None:
    with pytest.raises(LayoutError) as info:
        tile_rects("custom", 1920, 1080)
    assert info.value.reason is LayoutErrorReason.MISSING_RECTS
    with pytest.raises(LayoutError) as info:
        tile_rects("custom", 1920, 1080, [])
    assert info.value.reason is LayoutErrorReason.MISSING_RECTS
    with pytest.raises(LayoutError) as info:
        tile_rects("4", 1920, 1080, [(0, 0, 1, 1)])
    assert info.value.reason is LayoutErrorReason.UNEXPECTED_RECTS


def test_canvas_too_small() -> None:
    with pytest.raises(LayoutError) as info:
        tile_rects("36", 10, 10)
    assert info.value.reason is LayoutErrorReason.CANVAS_TOO_SMALL
    with pytest.raises(LayoutError) as info:
        tile_rects("1", 1, 100)
    assert info.value.reason is LayoutErrorReason.CANVAS_TOO_SMALL
    with pytest.raises(LayoutError) as info:
        tile_rects("custom", 100, 100, [(0, 0, 0.001, 0.5)])
    assert info.value.reason is LayoutErrorReason.EMPTY_RECT


def test_layout_module_imports_no_media_libraries() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import bridge.layout; "
        "bad = [m for m in ('cv2', 'av', 'numpy', 'PIL') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""


def test_a_huge_integer_in_a_rect_is_a_layout_error() -> None:
    from bridge.layout import LayoutError, validate_custom

    with pytest.raises(LayoutError):
        validate_custom([[0, 0, 10**400, 1]])
