"""The routing plan: the conference's decisions that the media plane carries out.

The relay (bridge/) knows nothing of floors or roles; it is told, per subscriber session, which
source each negotiated slot carries, which sources make up its programme audio, and which
publications are needed at all (the rest are paused at the publisher).

Decisions (ARCHITECTURE.md, bridge/):

- A terminal's ``main`` video carries the floor holder, or the chair when nobody holds the floor;
  the floor holder itself sees the chair. The chair's ``main`` carries the floor holder (nothing
  when nobody holds it); its extra slots carry the sites it picked for preview.
- Wall displays and the operator's desk receive the wall output they show.
- Programme audio is the chair and the floor holder, minus the subscriber itself (mix-minus) and
  minus any muted site: a muted site's audio is not forwarded at all.
- A site whose video only wall tiles need gets a :class:`VideoLimit` (``video_limits``): the
  largest height it is shown at and the wall's frame rate, sent to it with ``pause``
  (``video_limit``), so a terminal on a 25-tile wall sends a 202-line picture, not the 360p or
  720p its camera takes, and the wall decodes (and its uplink carries) only what shows.
  Anything else that takes its video (a slot, the programme, a WHEP viewer) lifts the limit.
- The server's own programme listeners (the recorder, the cascade uplink) get what a terminal
  would (:meth:`RoutingPlan.programme_for`); while one wants it (``programme_wanted``) the
  programme's sources count as needed, so they are not paused even if no terminal is online.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .model import Role, SessionId, SiteId

__all__ = ["RoutingPlan", "SessionRoute", "SubscriberView", "VideoLimit", "compute_plan"]

#: A slot's source: a site id, a wall output id, or nothing.
Source = str


@dataclass(frozen=True, slots=True)
class SubscriberView:
    """What the planner needs to know of one live session."""

    session: SessionId
    site: SiteId
    role: Role
    slots: tuple[str, ...]  # negotiated receive slots: "main", "extra1", ...
    output: str | None = None  # the wall output a wall / operator session shows


@dataclass(frozen=True, slots=True)
class VideoLimit:
    """The most of a publisher's video anything needs: PROTOCOL.md ``pause`` ``video_limit``
    (docs/protocol.md): at most ``height`` pixels high, ``fps`` frames a second."""

    height: int
    fps: int

    def __post_init__(self) -> None:
        if self.height < 2 or self.fps < 1:
            raise ValueError(f"bad video limit {self.height}p {self.fps} fps")

    def merge(self, other: VideoLimit | None) -> VideoLimit:
        """The limit that satisfies both (the larger of each)."""
        if other is None:
            return self
        return VideoLimit(max(self.height, other.height), max(self.fps, other.fps))

    def to_wire(self) -> dict[str, int]:
        return {"height": self.height, "fps": self.fps}


@dataclass(frozen=True, slots=True)
class SessionRoute:
    video: Mapping[str, Source | None]  # slot name → source
    audio: tuple[SiteId, ...]  # programme audio sources, mix-minus


@dataclass(frozen=True, slots=True)
class RoutingPlan:
    routes: Mapping[SessionId, SessionRoute]
    video_needed: frozenset[Source]  # sources whose video someone receives or the wall shows
    audio_needed: frozenset[SiteId]
    upcoming: frozenset[Source]  # sources a poll switches to next: ask their keyframes early
    chair: SiteId | None = None
    floor: SiteId | None = None
    speakers: tuple[SiteId, ...] = ()  # chair and floor holder, unmuted: the programme audio
    programme_wanted: bool = False  # a server-side listener (recorder, uplink) takes it
    video_limits: Mapping[SiteId, VideoLimit] = field(default_factory=dict)  # wall-only sites

    def route(self, session: SessionId) -> SessionRoute | None:
        return self.routes.get(session)

    def programme_for(self, site: SiteId | None) -> SessionRoute:
        """The programme as a terminal at *site* gets it (None: a listener that is no site):
        ``main`` video is the floor holder, or the chair when nobody holds the floor (or when
        *site* holds it); audio is the speakers minus *site* (mix-minus)."""
        view = SubscriberView(SessionId(""), site or SiteId(""), Role.TERMINAL, ("main",))
        audio = tuple(s for s in self.speakers if s != site)
        return SessionRoute(video={"main": _main_source(view, self.chair, self.floor)}, audio=audio)


def compute_plan(
    *,
    chair: SiteId | None,
    floor: SiteId | None,
    sessions: Iterable[SubscriberView],
    previews: Mapping[SessionId, Mapping[str, Source | None]],
    audio_muted: frozenset[SiteId],
    wall_sources: Iterable[Source],
    upcoming: Iterable[Source] = (),
    programme_wanted: bool = False,
    watched: Iterable[SiteId] = (),
    wall_limits: Mapping[SiteId, VideoLimit] | None = None,
) -> RoutingPlan:
    """Plan every session's slots from the conference's state (pure).

    *watched*: sites a server-side viewer (a WHEP player) receives, video and audio.
    *wall_limits*: for the sites wall tiles show (or a tile's poll switches to), how much of
    their video the wall needs; a site that anything else needs too gets no limit.
    """
    routes: dict[SessionId, SessionRoute] = {}
    video_needed: set[Source] = set()
    audio_needed: set[SiteId] = set()
    speakers = [s for s in dict.fromkeys((chair, floor)) if s is not None and s not in audio_muted]
    for site in watched:
        video_needed.add(site)
        if site not in audio_muted:
            audio_needed.add(site)
    if programme_wanted:
        programme = floor if floor is not None else chair
        if programme is not None:
            video_needed.add(programme)
        audio_needed.update(speakers)
    for view in sessions:
        video: dict[str, Source | None] = {}
        for slot in view.slots:
            if slot == "main":
                video[slot] = _main_source(view, chair, floor)
            else:
                video[slot] = previews.get(view.session, {}).get(slot)
        audio: tuple[SiteId, ...] = ()
        if view.role not in (Role.WALL, Role.OPERATOR) and "main" in view.slots:
            audio = tuple(dict.fromkeys(s for s in speakers if s != view.site))
        routes[view.session] = SessionRoute(video=video, audio=audio)
        video_needed.update(src for src in video.values() if src is not None)
        audio_needed.update(audio)
    limits = {
        site: limit for site, limit in (wall_limits or {}).items() if site not in video_needed
    }
    video_needed.update(wall_sources)
    return RoutingPlan(
        routes=routes,
        video_needed=frozenset(video_needed),
        audio_needed=frozenset(audio_needed),
        upcoming=frozenset(upcoming),
        chair=chair,
        floor=floor,
        speakers=tuple(speakers),
        programme_wanted=programme_wanted,
        video_limits=limits,
    )


def _main_source(view: SubscriberView, chair: SiteId | None, floor: SiteId | None) -> Source | None:
    if view.role in (Role.WALL, Role.OPERATOR):
        return view.output
    if view.role is Role.CHAIR:
        return floor
    if floor is None or floor == view.site:
        return chair if chair != view.site else None
    return floor
