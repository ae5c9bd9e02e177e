"""The wall compositor (bridge/compositor.py, scaler.py, labels.py) on synthetic frames.

Sources are painted with distinct flat colours (or stripes), so where each one lands can be
read back from the composed I420 canvas. No timing is asserted anywhere.
"""

from __future__ import annotations

import logging
import threading

import av
import numpy as np
import numpy.typing as npt
import pytest

from bridge.compositor import (
    NO_SIGNAL_TEXT,
    OFFLINE_TEXT,
    Compositor,
    CompositorConfig,
    FitMode,
    TileSpec,
)
from bridge.labels import (
    DEFAULT_FONT_CANDIDATES,
    FontNotFoundError,
    LabelConfig,
    TextRenderer,
    rgb_to_yuv,
)
from bridge.layout import LayoutError, LayoutErrorReason, Rect, tile_rects
from bridge.scaler import Method, plan_tile, plane_method

U8 = npt.NDArray[np.uint8]
STREETS = [
    "珠吉街",
    "冼村街",
    "猎德街",
    "沙河街",
    "石牌街",
    "长兴街",
    "天河南街",
    "黄村街",
    "林和街",
]
W, H = 640, 360
BLACK = rgb_to_yuv((0, 0, 0))


def colour(i: int) -> tuple[int, int, int]:
    """A distinct flat Y, U, V colour per source index (away from the black background)."""
    return 40 + 20 * i, 60 + 15 * i, 200 - 12 * i


def raw(w: int, h: int, yuv: tuple[int, int, int]) -> tuple[U8, U8, U8]:
    cw, ch = (w + 1) // 2, (h + 1) // 2
    return (
        np.full((h, w), yuv[0], np.uint8),
        np.full((ch, cw), yuv[1], np.uint8),
        np.full((ch, cw), yuv[2], np.uint8),
    )


def frame(w: int, h: int, yuv: tuple[int, int, int]) -> av.VideoFrame:
    """A yuv420p frame painted through its planes (line size may exceed the width)."""
    out = av.VideoFrame(w, h, "yuv420p")
    for plane, value in zip(out.planes, yuv, strict=True):
        np.frombuffer(plane, np.uint8)[:] = value  # type: ignore[call-overload]
    return out


def planes(out: av.VideoFrame) -> tuple[U8, U8, U8]:
    data = out.to_ndarray()
    h, w = out.height, out.width
    chroma = data[h:].reshape(2, h // 2, w // 2)
    return data[:h], chroma[0], chroma[1]


def pixel(out: av.VideoFrame, x: int, y: int) -> tuple[int, int, int]:
    yp, up, vp = planes(out)
    return int(yp[y, x]), int(up[y // 2, x // 2]), int(vp[y // 2, x // 2])


def centre(r: Rect) -> tuple[int, int]:
    return r.x + r.w // 2, r.y + r.h // 3  # above the label at the bottom-left


@pytest.fixture(scope="module")
def renderer() -> TextRenderer:
    return TextRenderer()


def make(**kwargs: object) -> Compositor:
    options: dict[str, object] = {"width": W, "height": H, "show_clock": False}
    options.update(kwargs)
    return Compositor(CompositorConfig(**options))  # type: ignore[arg-type]


# -- placement ---------------------------------------------------------------------------


def test_each_source_lands_in_its_rect() -> None:
    comp = make(show_labels=False)
    comp.set_layout("9", None, [TileSpec(f"s{i}", STREETS[i]) for i in range(9)])
    sizes = [(640, 360), (1280, 720), (320, 180), (641, 361), (213, 120), (1920, 1080)]
    for i in range(9):
        w, h = sizes[i % len(sizes)]
        source = frame(w, h, colour(i)) if i % 2 else raw(w, h, colour(i))
        comp.push(f"s{i}", source, now=0.0)
    out = comp.compose(now=0.5)
    rects = comp.tile_rects()
    assert rects == tile_rects("9", W, H)
    for i, r in enumerate(rects):
        assert pixel(out, *centre(r)) == colour(i), (i, r)
        # the whole tile is this source (16:9 into 16:9: no bars), except at the edges
        yp = planes(out)[0]
        inner = yp[r.y + 2 : r.y + r.h - 2, r.x + 2 : r.x + r.w - 2]
        assert np.all(inner == colour(i)[0]), i
    assert comp.stats.draw_errors == 0


def test_output_is_a_yuv420p_frame_of_the_canvas_size() -> None:
    comp = make()
    out = comp.compose(now=0.0)
    assert (out.width, out.height, out.format.name) == (W, H, "yuv420p")


def test_custom_layout_and_empty_tiles() -> None:
    comp = make(show_labels=False)
    rects = [(0.0, 0.0, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5)]
    comp.set_layout("custom", rects, [TileSpec("a"), TileSpec(None)])
    comp.push("a", raw(320, 180, colour(3)), now=0.0)
    out = comp.compose(now=0.0)
    a, empty = comp.tile_rects()
    assert pixel(out, *centre(a)) == colour(3)
    assert pixel(out, *centre(empty)) == BLACK
    assert pixel(out, 10, H - 10) == BLACK  # not covered by any tile


def test_letterbox_and_fill_geometry() -> None:
    tile = Rect(0, 0, 320, 180)
    box = plan_tile(tile, 480, 360, FitMode.LETTERBOX)  # 4:3 into 16:9
    assert box.dst == Rect(40, 0, 240, 180)
    assert box.bars() == (Rect(0, 0, 40, 180), Rect(280, 0, 40, 180))
    fill = plan_tile(tile, 480, 360, FitMode.FILL)
    assert fill.dst == tile
    assert fill.crop == Rect(0, 44, 480, 270)
    assert fill.bars() == ()
    tall = plan_tile(Rect(100, 50, 200, 400), 640, 360, FitMode.LETTERBOX)
    assert tall.dst.x == 100 and tall.dst.w == 200 and tall.dst.y > 50
    assert all(v % 2 == 0 for v in (*tall.dst, *fill.crop))


@pytest.mark.parametrize("fit", [FitMode.LETTERBOX, FitMode.FILL])
@pytest.mark.parametrize(
    ("size", "as_frame"),
    [
        ((480, 360), False),  # fill: linear upscale of a crop; letterbox: copy
        ((1280, 960), True),  # fill: exact 2x of a crop; letterbox: swscale
        ((1000, 750), False),  # swscale both ways, fill through its crop window
        ((1000, 750), True),
    ],
)
def test_letterbox_and_fill_on_the_canvas(
    fit: FitMode, size: tuple[int, int], as_frame: bool
) -> None:
    # 4:3 source: the top 1/18 bright, the rest mid grey; fill crops the top 1/8 away.
    w, h = size
    y, u, v = raw(w, h, (120, 128, 128))
    y[: h // 18] = 220
    source: object = (y, u, v)
    if as_frame:
        frame = av.VideoFrame(w, h, "yuv420p")
        for plane, data in zip(frame.planes, (y, u, v), strict=True):
            view = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)  # type: ignore[call-overload]
            view[:, : data.shape[1]] = data
        source = frame
    comp = make(show_labels=False, fit=fit)
    comp.set_layout("1", None, [TileSpec("cam")])
    comp.push("cam", source, now=0.0)  # type: ignore[arg-type]
    yp = planes(comp.compose(now=0.0))[0]
    assert comp.stats.draw_errors == 0
    if fit is FitMode.LETTERBOX:
        assert np.all(yp[:, :78] == BLACK[0]) and np.all(yp[:, -78:] == BLACK[0])
        assert abs(int(yp[5, W // 2]) - 220) <= 2
        assert yp[H // 2, W // 2] == 120
    else:
        assert not np.any(yp == BLACK[0])
        assert yp.max() <= 121 and yp.min() >= 119


def test_per_tile_fit_overrides_config() -> None:
    comp = make(show_labels=False)
    comp.set_layout("2", None, [TileSpec("a"), TileSpec("a", fit=FitMode.FILL)])
    comp.push("a", raw(640, 360, colour(1)), now=0.0)
    out = comp.compose(now=0.0)
    left, right = comp.tile_rects()
    assert pixel(out, left.x + left.w // 2, 4) == BLACK  # letterboxed: bar on top
    assert pixel(out, right.x + right.w // 2, 4) == colour(1)  # filled


@pytest.mark.parametrize(
    ("src", "dst", "method"),
    [
        ((640, 360), (640, 360), Method.COPY),
        ((640, 360), (320, 180), Method.HALVE),
        ((1280, 720), (320, 180), Method.HALVE),
        ((1280, 720), (480, 270), Method.SWSCALE),
        ((640, 360), (384, 216), Method.SWSCALE),
        ((640, 360), (960, 540), Method.LINEAR),
    ],
)
def test_resize_method_rules(src: tuple[int, int], dst: tuple[int, int], method: Method) -> None:
    assert plane_method(*src, *dst) is method


@pytest.mark.parametrize("size", [(1280, 720), (640, 360), (400, 300), (320, 180)])
def test_every_resize_method_keeps_a_gradient(size: tuple[int, int]) -> None:
    w, h = size
    ramp = np.tile(np.linspace(16, 235, w).astype(np.uint8), (h, 1))
    _, u, v = raw(w, h, (0, 90, 170))
    comp = make(show_labels=False, width=960, height=540)
    comp.set_layout("4", None, [TileSpec("a")])
    comp.push("a", (ramp, u, v), now=0.0)
    out = comp.compose(now=0.0)
    r = comp.tile_rects()[0]
    yp, up, vp = planes(out)
    row = yp[r.y + r.h // 2, r.x : r.x + r.w].astype(int)
    picture = row[row != BLACK[0]]
    assert picture[0] < 40 and picture[-1] > 210
    assert np.all(np.diff(picture) >= -1)  # still a ramp, left to right
    assert up[(r.y + r.h // 2) // 2, (r.x + r.w // 2) // 2] == 90
    assert vp[(r.y + r.h // 2) // 2, (r.x + r.w // 2) // 2] == 170


# -- text --------------------------------------------------------------------------------


def test_cjk_glyphs_are_real(renderer: TextRenderer) -> None:
    notdef = renderer.text_mask("\U0010fffd", 32)
    masks = {ch: renderer.text_mask(ch, 32) for ch in "珠吉街冼村"}
    for ch, mask in masks.items():
        assert mask.any(), ch
        assert mask.shape != notdef.shape or not np.array_equal(mask, notdef), ch
        assert renderer.has_glyph(ch)
    flat = [m.tobytes() for m in masks.values()]
    assert len(set(flat)) == len(flat)  # every character draws differently
    a, b = renderer.text_mask("珠吉街", 32), renderer.text_mask("冼村街", 32)
    assert a.shape == b.shape and not np.array_equal(a, b)
    # the shared 街 is drawn the same at the end of both names
    assert np.array_equal(a[:, -a.shape[1] // 3 :], b[:, -b.shape[1] // 3 :])
    # whole labels: real names differ from each other and from a label of .notdef boxes
    tofu = renderer.label("\U0010fffd" * 3, 32, 400).coverage
    zhuji = renderer.label("珠吉街", 32, 400).coverage
    xiancun = renderer.label("冼村街", 32, 400).coverage
    assert tofu is not None and zhuji is not None and xiancun is not None
    assert zhuji.shape == xiancun.shape == tofu.shape
    assert not np.array_equal(zhuji, xiancun)
    assert not np.array_equal(zhuji, tofu) and not np.array_equal(xiancun, tofu)
    assert not renderer.has_glyph("\U0010fffd")
    assert renderer.missing_glyphs("珠吉街\U0010fffd") == "\U0010fffd"
    for name in STREETS:
        assert renderer.missing_glyphs(name) == ""


def test_labels_reach_the_canvas(renderer: TextRenderer) -> None:
    comp = make()
    comp.set_layout("2", None, [TileSpec("a", "珠吉街"), TileSpec("b", "冼村街")])
    comp.push("a", raw(640, 360, (60, 128, 128)), now=0.0)
    comp.push("b", raw(640, 360, (60, 128, 128)), now=0.0)
    yp = planes(comp.compose(now=0.0))[0]
    regions = []
    for r in comp.tile_rects():
        # the label sits at the bottom-left of the tile; same video, different text
        region = yp[r.y + r.h - 60 : r.y + r.h, r.x : r.x + 120].astype(int)
        assert region.max() > 180  # white text over the video (Y=60) and letterbox bars
        regions.append(region)
    assert not np.array_equal(regions[0], regions[1])
    label = renderer.label("珠吉街", 24, 300)
    assert label.coverage is not None and label.coverage.any()


def test_font_errors_are_clear(tmp_path: object) -> None:
    with pytest.raises(FontNotFoundError) as info:
        TextRenderer(LabelConfig(font_path="/nonexistent/font.ttc"))
    assert "/nonexistent/font.ttc" in str(info.value)
    assert info.value.tried == ("/nonexistent/font.ttc",)
    with pytest.raises(FontNotFoundError):
        TextRenderer(LabelConfig(font_candidates=()))
    latin = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    import os

    if os.path.isfile(latin):
        with pytest.raises(FontNotFoundError, match="no glyph"):
            TextRenderer(LabelConfig(font_path=latin))
        # a Latin-only candidate is skipped for the next one that has CJK
        found = TextRenderer(LabelConfig(font_candidates=(latin, *DEFAULT_FONT_CANDIDATES)))
        assert found.font_path != latin


def test_banner_band_and_clock() -> None:
    comp = make(show_clock=True, buffers=1)
    comp.set_layout("4", None, [TileSpec(f"s{i}") for i in range(4)])
    out = comp.compose(now=0.0, clock_text="08:15:30")
    band = comp.tile_rects()[0].y
    assert band > 0 and band % 2 == 0
    assert pixel(out, 2, 2) == rgb_to_yuv(comp.config.labels.banner_background)
    clock_a = planes(out)[0][:band, W // 2 :].copy()
    out = comp.compose(now=0.1, clock_text="08:15:30")
    assert comp.stats.band_drawn == 1  # unchanged text: not redrawn
    out = comp.compose(now=1.0, clock_text="08:15:31")
    assert comp.stats.band_drawn == 2
    clock_b = planes(out)[0][:band, W // 2 :]
    assert not np.array_equal(clock_a, clock_b)
    comp.set_banner("天河区应急指挥视频会商")
    yp = planes(comp.compose(now=1.0, clock_text="08:15:31"))[0]
    assert yp[:band, : W // 2].max() > 150  # banner text drawn


def test_no_band_without_banner_or_clock() -> None:
    comp = make(show_clock=False)
    comp.set_layout("4", None, [TileSpec("a")])
    comp.compose(now=0.0)
    assert comp.tile_rects()[0].y == 0
    comp.set_banner("会标")
    comp.compose(now=0.0)
    assert comp.tile_rects()[0].y > 0


def test_banner_overlay_keeps_tile_sizes_and_stays_on_top() -> None:
    comp = make(buffers=1, banner_overlay=True, show_labels=False)
    comp.set_layout("4", None, [TileSpec(f"s{i}") for i in range(4)])
    comp.set_banner("天河区应急指挥视频会商")
    for i in range(4):
        comp.push(f"s{i}", raw(320, 180, colour(i)), now=0.0)
    out = comp.compose(now=0.0)
    assert comp.tile_rects() == tile_rects("4", W, H)
    banner = rgb_to_yuv(comp.config.labels.banner_background)
    assert pixel(out, 2, 2) == banner
    assert pixel(out, *centre(comp.tile_rects()[3])) == colour(3)
    # a top tile redrawn under the band: the band is drawn again over it
    comp.push("s0", raw(320, 180, colour(6)), now=0.1)
    out = comp.compose(now=0.1)
    assert pixel(out, 2, 2) == banner
    assert pixel(out, 2, H // 2 - 4) == colour(6)
    assert comp.stats.band_drawn == 2
    comp.push("s3", raw(320, 180, colour(7)), now=0.2)  # bottom tile: band untouched
    comp.compose(now=0.2)
    assert comp.stats.band_drawn == 2


def test_floor_border() -> None:
    comp = make(show_labels=False, buffers=1)
    comp.set_layout("4", None, [TileSpec(f"s{i}") for i in range(4)])
    for i in range(4):
        comp.push(f"s{i}", raw(320, 180, colour(i)), now=0.0)
    comp.set_floor("s1")
    out = comp.compose(now=0.0)
    r = comp.tile_rects()[1]
    border = rgb_to_yuv(comp.config.floor_border)
    assert pixel(out, r.x, r.y) == border
    assert pixel(out, r.x + r.w - 1, r.y + r.h // 2) == border
    assert pixel(out, *centre(r)) == colour(1)
    assert pixel(out, *comp.tile_rects()[0][:2]) == colour(0)
    comp.set_floor(None)
    out = comp.compose(now=0.0)
    assert pixel(out, r.x, r.y) == colour(1)
    assert comp.stats.tile_draws == [1, 2, 1, 1]


def test_bars_kept_between_frames_stay_exact_under_labels_and_border() -> None:
    # 4:3 pictures in 16:9 tiles: bars left and right, the label partly over the left bar
    # (bars are filled once per canvas, and again only where the label blends onto them)
    comp = make(buffers=1)
    comp.set_layout("4", None, [TileSpec(f"s{i}", STREETS[i]) for i in range(4)])

    def compose(value: int, floor: str | None) -> av.VideoFrame:
        comp.set_floor(floor)
        for i in range(4):
            comp.push(f"s{i}", raw(240, 180, (value + 10 * i, 128, 128)), now=0.0)
        return comp.compose(now=0.0)

    first = planes(compose(100, None))[0].copy()
    for value in (110, 120, 130):  # same geometry, new pictures: no accumulation anywhere
        out = planes(compose(value, None))[0]
        for i, r in enumerate(comp.tile_rects()):
            plan = plan_tile(r, 240, 180, FitMode.LETTERBOX)
            for bar in plan.bars():
                area = (slice(bar.y, bar.y + bar.h), slice(bar.x, bar.x + bar.w))
                assert np.array_equal(out[area], first[area]), (value, i, bar)
            assert out[centre(r)[1], centre(r)[0]] == value + 10 * i
    compose(140, "s1")  # the floor border over tile 1's bars, then taken away again
    out = planes(compose(100, None))[0]
    assert np.array_equal(out, first)
    assert comp.stats.draw_errors == 0


def test_snap_draws_near_halves_as_exact_halves() -> None:
    tile = Rect(0, 64, 384, 202)  # a tile of the 1080p 5x5 layout under the band
    exact = plan_tile(tile, 640, 360, FitMode.LETTERBOX)
    assert (exact.dst.w, exact.dst.h, exact.luma) == (360, 202, Method.SWSCALE)
    snapped = plan_tile(tile, 640, 360, FitMode.LETTERBOX, snap=0.125)
    assert snapped.dst == Rect(32, 74, 320, 180)
    assert (snapped.luma, snapped.chroma) == (Method.HALVE, Method.HALVE)
    # too far from a half, a size that does not halve exactly, an upscale: no snapping
    assert plan_tile(tile, 640, 360, FitMode.LETTERBOX, snap=0.05).dst.w == 360
    assert plan_tile(tile, 642, 362, FitMode.LETTERBOX, snap=0.125).dst.w != 320
    assert plan_tile(tile, 320, 180, FitMode.LETTERBOX, snap=0.125).dst.h == 202
    comp = make(width=1920, height=1080, show_labels=False, show_clock=True, snap_scale=0.125)
    comp.set_layout("25", None, [TileSpec("cam")])
    comp.push("cam", raw(640, 360, colour(2)), now=0.0)
    out = comp.compose(now=0.0)
    r = comp.tile_rects()[0]
    assert pixel(out, r.x + 32, r.y + 10) == colour(2)  # the picture: 320x180, centred
    assert pixel(out, r.x + 30, r.y + 10) == BLACK  # the wider bar left of it
    with pytest.raises(ValueError):
        CompositorConfig(snap_scale=0.5)


def test_pictures_about_the_tile_size_are_copied_not_scaled() -> None:
    tile = Rect(0, 266, 384, 204)  # a tile of the 1080p 5x5 layout under the band
    smaller = plan_tile(tile, 360, 202, FitMode.LETTERBOX, copy_tolerance=0.07)
    assert (smaller.luma, smaller.chroma) == (Method.COPY, Method.COPY)
    assert smaller.dst == Rect(12, 266, 360, 202)
    assert plan_tile(tile, 360, 202, FitMode.LETTERBOX).luma is Method.LINEAR
    bigger = plan_tile(tile, 384, 216, FitMode.LETTERBOX, copy_tolerance=0.07)
    assert bigger.luma is Method.SWSCALE  # cropping is a separate choice
    bigger = plan_tile(tile, 384, 216, FitMode.LETTERBOX, crop_tolerance=0.07)
    assert (bigger.luma, bigger.chroma) == (Method.COPY, Method.COPY)
    assert bigger.dst == tile and bigger.crop == Rect(0, 6, 384, 204)
    assert plan_tile(tile, 640, 360, FitMode.LETTERBOX, crop_tolerance=0.07).dst.w == 362
    assert CompositorConfig().copy_tolerance > 0 and CompositorConfig().crop_tolerance == 0
    # on the canvas: the source's own pixels, 1:1 (a gradient would show any scaling)
    comp = make(width=1920, height=1080, show_labels=False, show_clock=True, crop_tolerance=0.07)
    comp.set_layout("25", None, [TileSpec(f"s{i}") for i in range(25)])
    y, u, v = raw(384, 216, (0, 128, 128))
    y[:] = (np.arange(384) % 200 + 20).astype(np.uint8)[None, :]
    y[:, :4] = np.arange(216, dtype=np.uint8)[:, None]
    comp.push("s5", (y, u, v), now=0.0)
    out = planes(comp.compose(now=0.0))[0]
    r = comp.tile_rects()[5]
    assert r == tile
    assert np.array_equal(out[r.y : r.y + r.h, r.x : r.x + r.w], y[6:210])
    assert comp.stats.draw_errors == 0
    with pytest.raises(ValueError):
        CompositorConfig(copy_tolerance=-0.1)


# -- placeholders, stalls, bad input -------------------------------------------------------


def _tile_equals(out: av.VideoFrame, r: Rect, y: U8) -> bool:
    return bool(np.array_equal(planes(out)[0][r.y : r.y + r.h, r.x : r.x + r.w], y))


def test_placeholders_for_absent_and_stalled_sources(renderer: TextRenderer) -> None:
    comp = make(buffers=1)
    comp.set_layout("2", None, [TileSpec("a", "猎德街"), TileSpec("b", "沙河街")])
    comp.push("a", raw(640, 360, colour(2)), now=10.0)
    out = comp.compose(now=10.5)
    ra, rb = comp.tile_rects()
    offline = renderer.placeholder("沙河街", OFFLINE_TEXT, rb.w, rb.h, offline=True)
    assert _tile_equals(out, rb, offline.y)
    assert pixel(out, *centre(ra)) == colour(2)
    # silent for 2 s: no signal
    out = comp.compose(now=11.99)
    assert pixel(out, *centre(ra)) == colour(2)
    out = comp.compose(now=12.0)
    stalled = renderer.placeholder("猎德街", NO_SIGNAL_TEXT, ra.w, ra.h, offline=False)
    assert _tile_equals(out, ra, stalled.y)
    assert not np.array_equal(stalled.y, offline.y)
    # back again, then removed (left the conference): offline
    comp.push("a", raw(640, 360, colour(4)), now=12.5)
    out = comp.compose(now=12.6)
    assert pixel(out, *centre(ra)) == colour(4)
    comp.remove("a")
    out = comp.compose(now=12.7)
    assert _tile_equals(
        out, ra, renderer.placeholder("猎德街", OFFLINE_TEXT, ra.w, ra.h, offline=True).y
    )


def test_resolution_change_mid_stream() -> None:
    comp = make(show_labels=False)
    comp.set_layout("4", None, [TileSpec("a")])
    r = tile_rects("4", W, H)[0]
    for now, (w, h), i in [(0.0, (640, 360), 1), (0.1, (1280, 720), 2), (0.2, (320, 240), 3)]:
        comp.push("a", frame(w, h, colour(i)), now=now)
        out = comp.compose(now=now)
        assert pixel(out, *centre(r)) == colour(i)
    # 4:3 now: letterboxed with bars at the sides
    assert pixel(out, r.x + 2, r.y + r.h // 2) == BLACK
    assert comp.stats.draw_errors == 0


@pytest.mark.parametrize(
    "bad",
    [
        (
            np.zeros((360, 640), np.uint8),
            np.zeros((90, 160), np.uint8),
            np.zeros((180, 320), np.uint8),
        ),
        (
            np.zeros((360, 640), np.float32),
            np.zeros((180, 320), np.uint8),
            np.zeros((180, 320), np.uint8),
        ),
        (
            np.zeros((360, 640, 3), np.uint8),
            np.zeros((180, 320), np.uint8),
            np.zeros((180, 320), np.uint8),
        ),
        (np.zeros((1, 1), np.uint8), np.zeros((1, 1), np.uint8), np.zeros((1, 1), np.uint8)),
        (np.zeros((360, 640), np.uint8),),
        "not a frame",
    ],
)
def test_corrupt_frame_shows_no_signal(
    bad: object, renderer: TextRenderer, caplog: pytest.LogCaptureFixture
) -> None:
    comp = make(buffers=1)
    comp.set_layout("2", None, [TileSpec("a", "石牌街"), TileSpec("b", "长兴街")])
    comp.push("a", raw(640, 360, colour(1)), now=0.0)
    comp.push("b", raw(640, 360, colour(2)), now=0.0)
    comp.compose(now=0.0)
    with caplog.at_level(logging.WARNING, logger="bridge.compositor"):
        comp.push("a", bad, now=0.1)  # type: ignore[arg-type]
    assert any("malformed frame from a" in rec.getMessage() for rec in caplog.records)
    out = comp.compose(now=0.1)
    ra, rb = comp.tile_rects()
    assert _tile_equals(
        out, ra, renderer.placeholder("石牌街", NO_SIGNAL_TEXT, ra.w, ra.h, offline=False).y
    )
    assert pixel(out, *centre(rb)) == colour(2)
    assert comp.stats.malformed_frames == 1
    comp.push("a", raw(640, 360, colour(5)), now=0.2)
    assert pixel(comp.compose(now=0.2), *centre(ra)) == colour(5)


def test_non_yuv420p_frames_are_converted() -> None:
    comp = make(show_labels=False)
    comp.set_layout("1", None, [TileSpec("a")])
    rgb = np.zeros((360, 640, 3), np.uint8)
    rgb[...] = (255, 255, 255)
    comp.push("a", av.VideoFrame.from_ndarray(rgb, format="rgb24"), now=0.0)
    y, _, _ = pixel(comp.compose(now=0.0), W // 2, H // 2)
    assert y > 200


# -- incremental redraw ------------------------------------------------------------------


def test_unchanged_tiles_are_not_redrawn() -> None:
    comp = make(buffers=1)
    comp.set_layout("4", None, [TileSpec(f"s{i}", STREETS[i]) for i in range(4)])
    for i in range(4):
        comp.push(f"s{i}", raw(320, 180, colour(i)), now=0.0)
    comp.compose(now=0.0)
    assert comp.stats.tile_draws == [1, 1, 1, 1]
    comp.compose(now=0.1)
    assert comp.stats.tile_draws == [1, 1, 1, 1]
    assert comp.stats.tiles_skipped == 4
    comp.push("s2", raw(320, 180, colour(7)), now=0.2)
    out = comp.compose(now=0.2)
    assert comp.stats.tile_draws == [1, 1, 2, 1]
    assert pixel(out, *centre(comp.tile_rects()[2])) == colour(7)
    comp.set_layout("4", None, [TileSpec(f"s{i}", STREETS[i]) for i in range(4)])
    comp.compose(now=0.3)
    assert comp.stats.tile_draws == [1, 1, 1, 1]  # new layout: counted afresh


def test_ring_buffers_keep_handed_out_frames_intact() -> None:
    comp = make(buffers=2, show_labels=False)
    comp.set_layout("1", None, [TileSpec("a")])
    comp.push("a", raw(640, 360, colour(1)), now=0.0)
    first = comp.compose(now=0.0)
    comp.push("a", raw(640, 360, colour(2)), now=0.1)
    second = comp.compose(now=0.1)
    assert pixel(first, 100, 100) == colour(1)  # the previous frame was not overwritten
    assert pixel(second, 100, 100) == colour(2)
    third = comp.compose(now=0.2)  # same source generation: copied from the previous buffer
    assert pixel(third, 100, 100) == colour(2)
    assert comp.stats.tile_draws == [2]
    assert comp.stats.tiles_copied == 1
    comp.compose(now=0.3)
    assert comp.stats.tile_draws == [2]
    assert pixel(second, 100, 100) == colour(2)


@pytest.mark.parametrize("overlay", [False, True])
def test_tiles_copied_from_the_previous_canvas_match_a_fresh_draw(overlay: bool) -> None:
    # sources at half the output's rate, the floor moving, labels, banner and clock: the
    # ring of three canvases (copying what the previous one shows) must equal one canvas
    # drawn in place
    ring = make(buffers=3, show_clock=True, banner_overlay=overlay)
    single = make(buffers=1, show_clock=True, banner_overlay=overlay)
    for comp in (ring, single):
        comp.set_layout("9", None, [TileSpec(f"s{i}", STREETS[i]) for i in range(9)])
        comp.set_banner("天河区应急指挥中心")
    for step in range(12):
        for comp in (ring, single):
            for i in range(9):
                if (step + i) % 2 == 0:  # every source every other frame, half of them each time
                    comp.push(f"s{i}", raw(240, 180, colour((step + i) % 9)), now=step / 30)
            comp.set_floor(f"s{step // 4}")
        clock = f"09:00:{step // 5:02d}"
        a = ring.compose(now=step / 30, clock_text=clock)
        b = single.compose(now=step / 30, clock_text=clock)
        assert np.array_equal(a.to_ndarray(), b.to_ndarray()), step
    assert ring.stats.tiles_copied > 0
    assert ring.stats.tiles_drawn < 3 * single.stats.tiles_drawn


def test_bad_layouts_are_refused() -> None:
    comp = make()
    with pytest.raises(LayoutError) as info:
        comp.set_layout("4", None, [TileSpec(f"s{i}") for i in range(5)])
    assert info.value.reason is LayoutErrorReason.TOO_MANY_TILES
    with pytest.raises(LayoutError):
        comp.set_layout("custom", [(0, 0, 0.6, 1), (0.5, 0, 0.5, 1)], [TileSpec("a")])
    with pytest.raises(ValueError):
        CompositorConfig(width=641, height=360)
    with pytest.raises(ValueError):
        CompositorConfig(band_height=0.6)
    # a rect fine on the whole canvas but under 2 pixels below the band is refused up front
    thin = [(0.0, 0.0, 1.0, 1.02 / H), (0.0, 0.5, 1.0, 0.5)]
    tile_rects("custom", W, H, thin)
    with pytest.raises(LayoutError) as info:
        comp.set_layout("custom", thin, [TileSpec("a")])
    assert info.value.reason is LayoutErrorReason.EMPTY_RECT


def test_push_from_threads_while_composing() -> None:
    comp = make(buffers=2)
    comp.set_layout("9", None, [TileSpec(f"s{i}", STREETS[i]) for i in range(9)])
    errors: list[BaseException] = []

    def feed(first: int) -> None:
        try:
            for n in range(60):
                for i in range(first, 9, 3):
                    comp.push(f"s{i}", raw(320, 180, colour((i + n) % 9)), now=n * 0.01)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=feed, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    frames = 0
    while any(t.is_alive() for t in threads) or frames < 5:
        comp.compose(now=0.3)
        frames += 1
    for t in threads:
        t.join()
    out = comp.compose(now=0.7)
    assert not errors
    for i, r in enumerate(comp.tile_rects()):
        assert pixel(out, *centre(r)) == colour((i + 59) % 9)
