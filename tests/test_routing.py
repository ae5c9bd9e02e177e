"""The routing plan (``signalling.routing.compute_plan``): pure decisions for the media plane
(ARCHITECTURE.md, bridge/: which source each slot carries, mix-minus audio, what is needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from bridge.compositor import CompositorConfig, canvas_tile_rects
from bridge.layout import TILE_COUNTS
from bridge.scaler import FitMode
from bridge.wall import WallConfig
from signalling.model import Layout, Role, SessionId, SiteId, Tile
from signalling.routing import RoutingPlan, SubscriberView, compute_plan
from signalling.wall import wall_geometry

CHAIR = SiteId("tianhe")
A = SiteId("tianhe.zhuji")
B = SiteId("tianhe.xiancun")
CAM = SiteId("tianhe.cam1")

V_CHAIR = SubscriberView(SessionId("c"), CHAIR, Role.CHAIR, ("main", "extra1", "extra2"))
V_A = SubscriberView(SessionId("a"), A, Role.TERMINAL, ("main",))
V_B = SubscriberView(SessionId("b"), B, Role.TERMINAL, ("main",))
V_WALL = SubscriberView(SessionId("w"), SiteId("wall"), Role.WALL, ("main",), output="wall")
V_OP = SubscriberView(SessionId("o"), SiteId("op"), Role.OPERATOR, ("main", "extra1"), "wall")
V_OBS = SubscriberView(SessionId("v"), SiteId("viewer"), Role.OBSERVER, ("main",))
V_UP = SubscriberView(SessionId("u"), SiteId("city"), Role.UPLINK, ("main",))
EVERYONE = (V_CHAIR, V_A, V_B, V_WALL, V_OP, V_OBS, V_UP)


def plan(
    *,
    chair: SiteId | None = CHAIR,
    floor: SiteId | None = None,
    sessions: tuple[SubscriberView, ...] = EVERYONE,
    previews: Mapping[SessionId, Mapping[str, str | None]] | None = None,
    muted: frozenset[SiteId] = frozenset(),
    wall: tuple[str, ...] = (),
    upcoming: tuple[str, ...] = (),
) -> RoutingPlan:
    return compute_plan(
        chair=chair,
        floor=floor,
        sessions=sessions,
        previews=previews or {},
        audio_muted=muted,
        wall_sources=wall,
        upcoming=upcoming,
    )


def main(p: RoutingPlan, view: SubscriberView) -> str | None:
    route = p.route(view.session)
    assert route is not None
    return route.video["main"]


def audio(p: RoutingPlan, view: SubscriberView) -> tuple[SiteId, ...]:
    route = p.route(view.session)
    assert route is not None
    return route.audio


def test_no_floor() -> None:
    p = plan()
    assert {v.site: main(p, v) for v in EVERYONE} == {
        CHAIR: None,
        A: CHAIR,
        B: CHAIR,
        "wall": "wall",
        "op": "wall",
        "viewer": CHAIR,
        "city": CHAIR,
    }
    assert audio(p, V_A) == (CHAIR,) and audio(p, V_CHAIR) == ()
    assert audio(p, V_WALL) == () and audio(p, V_OP) == ()
    assert audio(p, V_OBS) == (CHAIR,) and audio(p, V_UP) == (CHAIR,)
    assert p.video_needed == {CHAIR, "wall"}
    assert p.audio_needed == {CHAIR}


def test_floor() -> None:
    p = plan(floor=A)
    assert main(p, V_A) == CHAIR and main(p, V_B) == A and main(p, V_CHAIR) == A
    assert main(p, V_UP) == A and main(p, V_WALL) == "wall"
    assert audio(p, V_B) == (CHAIR, A) and audio(p, V_A) == (CHAIR,)
    assert audio(p, V_CHAIR) == (A,)
    assert p.video_needed == {CHAIR, A, "wall"} and p.audio_needed == {CHAIR, A}


def test_camera_floor() -> None:
    p = plan(floor=CAM)
    assert main(p, V_A) == CAM and main(p, V_CHAIR) == CAM
    assert CAM in p.video_needed and audio(p, V_A) == (CHAIR, CAM)


def test_muted_sources_are_not_heard() -> None:
    p = plan(floor=A, muted=frozenset({A}))
    assert audio(p, V_B) == (CHAIR,) and audio(p, V_CHAIR) == ()
    assert p.audio_needed == {CHAIR}
    assert A in p.video_needed  # muted audio does not hide the picture
    p = plan(floor=A, muted=frozenset({CHAIR, A}))
    assert p.audio_needed == frozenset()
    assert all(audio(p, v) == () for v in EVERYONE)


@pytest.mark.parametrize("floor", [None, A])
def test_no_chair_configured(floor: SiteId | None) -> None:
    p = plan(chair=None, floor=floor)
    assert main(p, V_A) is None  # nobody to show it: no chair, and it cannot watch itself
    assert main(p, V_B) == floor
    assert audio(p, V_B) == ((floor,) if floor else ())


def test_previews_fill_extra_slots() -> None:
    p = plan(previews={V_CHAIR.session: {"extra1": B}, V_OP.session: {"extra1": "wall"}})
    route = p.route(V_CHAIR.session)
    assert route is not None
    assert dict(route.video) == {"main": None, "extra1": B, "extra2": None}
    op = p.route(V_OP.session)
    assert op is not None and dict(op.video) == {"main": "wall", "extra1": "wall"}
    assert B in p.video_needed


def test_sessions_without_main_hear_nothing() -> None:
    view = SubscriberView(SessionId("x"), A, Role.TERMINAL, ("extra1",))
    p = plan(sessions=(view,), floor=B)
    route = p.route(view.session)
    assert route is not None and route.audio == () and dict(route.video) == {"extra1": None}
    assert p.audio_needed == frozenset()


def test_wall_sources_and_upcoming() -> None:
    p = plan(sessions=(), wall=(A, CAM), upcoming=(B,))
    assert p.routes == {}
    assert p.video_needed == {A, CAM}
    assert p.upcoming == {B}
    assert p.route(SessionId("nobody")) is None


def test_floor_equal_to_chair_is_heard_once() -> None:
    p = plan(floor=CHAIR)
    assert audio(p, V_A) == (CHAIR,)
    assert main(p, V_A) == CHAIR


# -- the programme for server-side listeners (recorder, cascade uplink) ------------------------


def test_programme_for_is_what_a_terminal_gets_with_mix_minus() -> None:
    p = plan(floor=A)
    assert p.programme_for(None).video == {"main": A}
    assert p.programme_for(None).audio == (CHAIR, A)
    # the floor holder itself gets the chair, and never its own audio
    assert p.programme_for(A).video == {"main": CHAIR}
    assert p.programme_for(A).audio == (CHAIR,)
    # without a floor: the chair, and a muted chair is not heard
    p = plan(muted=frozenset({CHAIR}))
    assert p.programme_for(B).video == {"main": CHAIR}
    assert p.programme_for(B).audio == ()


def test_programme_wanted_keeps_its_sources_needed_without_subscribers() -> None:
    alone = (V_WALL,)
    idle = plan(floor=A, sessions=alone)
    assert A not in idle.video_needed and CHAIR not in idle.audio_needed
    wanted = compute_plan(
        chair=CHAIR,
        floor=A,
        sessions=alone,
        previews={},
        audio_muted=frozenset({A}),
        wall_sources=(),
        programme_wanted=True,
    )
    assert A in wanted.video_needed
    assert wanted.audio_needed == {CHAIR}  # the muted floor holder stays paused
    assert wanted.programme_wanted and wanted.speakers == (CHAIR,)


# -- the conference's wall geometry against the bridge's ------------------------------------


@pytest.mark.parametrize("banner", ["", "会商"])
@pytest.mark.parametrize("clock", [True, False])
@pytest.mark.parametrize("overlay", [False, True])
@pytest.mark.parametrize("fit", list(FitMode))
def test_wall_geometry_matches_the_compositor(
    banner: str, clock: bool, overlay: bool, fit: FitMode
) -> None:
    """What the conference works out a tile needs is what the bridge's compositor draws:
    every layout kind (and a custom one), band or not, letterboxed (the tile's height: no
    picture shows taller) or cropped (a 16:9 picture as wide as the tile, if taller), the
    frame rate the output picks."""
    compositor = CompositorConfig(show_clock=clock, banner_overlay=overlay, fit=fit)
    config = WallConfig(compositor=compositor)
    geometry = wall_geometry(config)
    custom = ((0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 0.5, 0.5), (0.5, 0.5, 0.25, 0.5))
    cases = [(k, n) for k, n in TILE_COUNTS.items() if n is not None] + [("custom", 3)]
    for kind, count in cases:
        tiles = tuple(
            Tile(source=SiteId(f"s{i}"), rect=custom[i] if kind == "custom" else None)
            for i in range(count)
        )
        limits = geometry.limits(Layout(kind=kind, tiles=tiles), banner)
        rects = canvas_tile_rects(
            compositor, kind, custom if kind == "custom" else None, show_band=bool(banner) or clock
        )
        assert len(limits) == len(rects) == count
        for limit, rect in zip(limits, rects, strict=True):
            assert limit is not None
            need = max(rect.h, math.ceil(rect.w * 9 / 16)) if fit is FitMode.FILL else rect.h
            assert limit.height in (need, need + 1) and limit.height % 2 == 0, (kind, rect)
            assert limit.fps == config.fps_for(count)


def test_wall_geometry_of_a_layout_the_canvas_cannot_show() -> None:
    """A layout the canvas cannot show gives no limits (the wall keeps its old one)."""
    geometry = wall_geometry(WallConfig())
    bad = Layout(kind="custom", tiles=(Tile(source=SiteId("a"), rect=(0.0, 0.0, 0.0001, 0.5)),))
    assert geometry.limits(bad, "") == [None]
