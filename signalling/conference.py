"""The conference as a pure state machine (ARCHITECTURE.md, signalling/; PROTOCOL.md).

No asyncio, no sockets, no clock: every call takes the time as an explicit ``now`` value and
returns an :class:`Outcome` — the reply's result fields, the messages to send (to everyone or to
named sessions), the sessions to close, and the *facts* worth persisting (joins, leaves, roll-call
results, presets). The routing plan for the media plane is recomputed after every change
(:attr:`Conference.plan`); ``slots`` and ``pause`` messages to media-connected sessions follow
from its differences.

Refusals raise :mod:`signalling.errors` exceptions and leave the state untouched.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from bridge.layout import LayoutError, tile_rects, validate_custom

from . import messages as m
from .errors import BadRequest, Conflict, Forbidden, NotFound
from .model import Layout, Level, Role, SessionId, Site, SiteId, Tile
from .rollcall import RollCall, RollcallResult
from .routing import RoutingPlan, Source, SubscriberView, VideoLimit, compute_plan

__all__ = [
    "CLOSE_REPLACED",
    "Conference",
    "ConferenceConfig",
    "Fact",
    "Outcome",
    "PresetDeleted",
    "PresetSaved",
    "RecordingChanged",
    "RollcallResult",
    "SiteJoined",
    "SiteLeft",
    "WallGeometry",
]

#: WebSocket close code for a session replaced by a newer login of the same site.
CLOSE_REPLACED = 4409

Wire: TypeAlias = dict[str, Any]
Recipients: TypeAlias = tuple[SessionId, ...] | None  # None: every attached session
PollKey: TypeAlias = tuple[str, str | int]  # (output, "floor" or tile index)

#: Roles that publish a camera and may hold the floor, raise a hand, answer a roll call.
SPEAKING_ROLES = frozenset({Role.TERMINAL, Role.UPLINK})


@dataclass(frozen=True, slots=True)
class WallGeometry:
    """The wall outputs' pictures as far as the conference needs them: to work out how much
    of a site's video its tiles show (:class:`~signalling.routing.VideoLimit`).

    Built from the bridge's :class:`bridge.wall.WallConfig` by
    :func:`signalling.wall.wall_geometry` (the tile rects are :func:`bridge.layout.tile_rects`
    below a band of ``band`` pixels, as :func:`bridge.compositor.canvas_tile_rects`; the frame
    rate as :meth:`bridge.wall.WallConfig.fps_for`; a test holds them to the bridge's).
    """

    width: int = 1920
    height: int = 1080
    band: int = 0  # taken off the top while the band (banner or clock) shows
    clock: bool = True  # the clock shows (so does the band) even without a banner
    fill: bool = False  # pictures cropped to fill their tiles (else letterboxed)
    fps: int = 30
    large_layout_tiles: int = 16
    large_layout_fps: int | None = None

    def fps_for(self, sources: int) -> int:
        if self.large_layout_fps is not None and sources >= self.large_layout_tiles:
            return min(self.fps, self.large_layout_fps)
        return self.fps

    def limits(self, layout: Layout, banner: str) -> list[VideoLimit | None]:
        """Per tile of *layout*, what a source shown there needs, and the output's frame
        rate. Letterboxed (the default), no picture shows taller than its tile, whatever its
        aspect: the tile's height, so a picture sent at that height is copied 1:1, not
        scaled (bridge.compositor ``copy_tolerance``). Cropped to fill, a 16:9 picture as
        wide as the tile may be taller: the larger of the two. None for every tile if the
        layout does not fit this canvas (the wall keeps its previous one)."""
        top = self.band if banner or self.clock else 0
        custom = [t.rect for t in layout.tiles if t.rect is not None]
        try:
            rects = tile_rects(
                layout.kind, self.width, self.height - top, custom if custom else None
            )
        except LayoutError:
            return [None] * len(layout.tiles)
        fps = self.fps_for(sum(1 for t in layout.tiles if t.source is not None))
        out: list[VideoLimit | None] = []
        for rect in rects[: len(layout.tiles)]:
            height = max(rect.h, -(-rect.w * 9 // 16)) if self.fill else rect.h
            out.append(VideoLimit(height + height % 2, fps))
        return out + [None] * (len(layout.tiles) - len(out))


@dataclass(frozen=True, slots=True)
class ConferenceConfig:
    conference_id: str
    title: str = ""
    rejoin_grace_s: float = 15.0
    rollcall_timeout_s: float = 30.0
    outputs: tuple[str, ...] = ("wall",)
    #: The wall outputs' geometry: sites only the wall shows are asked for no more than their
    #: tiles show (``pause`` ``video_limit``); None: never (publishers send what they capture).
    wall: WallGeometry | None = None


# Facts: what happened, for the attendance record and the preset store.
@dataclass(frozen=True, slots=True)
class SiteJoined:
    site: SiteId
    at: float


@dataclass(frozen=True, slots=True)
class SiteLeft:
    site: SiteId
    at: float


@dataclass(frozen=True, slots=True)
class PresetSaved:
    name: str
    layout: Layout


@dataclass(frozen=True, slots=True)
class PresetDeleted:
    name: str


@dataclass(frozen=True, slots=True)
class RecordingChanged:
    on: bool
    at: float


Fact: TypeAlias = (
    SiteJoined | SiteLeft | RollcallResult | PresetSaved | PresetDeleted | RecordingChanged
)


@dataclass(slots=True)
class Outcome:
    result: Wire = field(default_factory=dict)
    messages: list[tuple[Recipients, Wire]] = field(default_factory=list)
    closes: list[tuple[SessionId, int, str]] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)

    def broadcast(self, message: Wire) -> None:
        self.messages.append((None, message))

    def send(self, session: SessionId, message: Wire) -> None:
        self.messages.append(((session,), message))


@dataclass(slots=True)
class _SiteState:
    online: bool = False
    since: float | None = None
    audio_muted: bool = False
    video_muted: bool = False
    muted_by_chair: bool = False
    hand: bool = False
    link: Wire | None = None
    camera: str | None = None  # a camera site's ingest state (idle, live, retrying...)


@dataclass(slots=True)
class _Session:
    id: SessionId
    site: Site
    joined_at: float
    detached_at: float | None = None  # socket gone; resumable until the grace period ends
    slots: tuple[str, ...] = ()  # negotiated receive slots, once media is up
    sent_slots: dict[str, Wire] = field(default_factory=dict)
    sent_pause: tuple[bool, bool, VideoLimit | None] = (False, False, None)


@dataclass(slots=True)
class _Poll:
    sites: tuple[SiteId, ...]
    interval_s: float
    index: int
    next_at: float

    def to_wire(self, output: str, target: str | int) -> Wire:
        return {
            "output": output,
            "target": target,
            "sites": list(self.sites),
            "interval_s": self.interval_s,
            "current": self.sites[self.index] if 0 <= self.index < len(self.sites) else None,
        }


class Conference:
    """One conference: sites, sessions, floor, mutes, hands, roll call, polling, wall layouts."""

    def __init__(
        self,
        sites: Iterable[Site],
        config: ConferenceConfig,
        presets: Mapping[str, Layout] | None = None,
    ) -> None:
        self.config = config
        self.sites: dict[SiteId, Site] = {s.id: s for s in sites}
        chairs = [s.id for s in self.sites.values() if s.role is Role.CHAIR]
        self.chair: SiteId | None = chairs[0] if chairs else None
        self._state = {sid: _SiteState() for sid in self.sites}
        self._sessions: dict[SessionId, _Session] = {}
        self._live: dict[SiteId, SessionId] = {}
        self._hands: list[SiteId] = []  # raised hands, in the order they went up
        self._previews: dict[SessionId, dict[str, Source | None]] = {}
        self._polls: dict[PollKey, _Poll] = {}
        self._rounds = itertools.count(1)
        self.floor: SiteId | None = None
        self.rollcall: RollCall | None = None
        self.layouts: dict[str, Layout] = {o: Layout(output=o) for o in config.outputs}
        self.presets: dict[str, Layout] = dict(presets or {})
        self.banner = ""
        self.recording = False
        self._programme_taps: set[str] = set()  # server-side programme listeners (uplink...)
        self._source_taps: set[tuple[str, SiteId]] = set()  # server-side viewers of one site
        self.plan: RoutingPlan = self._compute_plan()

    # -- sessions ---------------------------------------------------------------------------

    def join(self, site_id: SiteId, session_id: SessionId, now: float) -> Outcome:
        """A site authenticated. A previous session of the same site is replaced (closed 4409)."""
        site = self.sites[site_id]
        out = Outcome()
        old = self._live.get(site_id)
        if old is not None:
            old_session = self._sessions.pop(old)
            previews = self._previews.pop(old, None)
            if previews:  # a rejoin resumes what the site had chosen to preview
                self._previews[session_id] = previews
            if old_session.detached_at is None:
                out.closes.append((old, CLOSE_REPLACED, "replaced by a newer session of this site"))
        self._sessions[session_id] = _Session(session_id, site, now)
        self._live[site_id] = session_id
        state = self._state[site_id]
        if not state.online:
            state.online, state.since = True, now
            out.facts.append(SiteJoined(site_id, now))
            out.broadcast(self._site_event(site_id))
        self._replan(out)
        return out

    def detach(self, session_id: SessionId, now: float) -> Outcome:
        """The socket closed without ``leave``: keep the site for the rejoin grace period."""
        session = self._sessions.get(session_id)
        if session is not None and session.detached_at is None:
            session.detached_at = now
            session.slots, session.sent_slots = (), {}
        return Outcome()

    def leave(self, session_id: SessionId, now: float) -> Outcome:
        """The session ends: its site goes offline (unless a newer session replaced it)."""
        out = Outcome()
        session = self._sessions.pop(session_id, None)
        self._previews.pop(session_id, None)
        if session is None or self._live.get(session.site.id) != session_id:
            return out
        site_id = session.site.id
        del self._live[site_id]
        state = self._state[site_id]
        state.online, state.since, state.link = False, now, None
        self._lower_hand(site_id, out)
        out.facts.append(SiteLeft(site_id, now))
        out.broadcast(self._site_event(site_id))
        if self.floor == site_id:
            self._set_floor(None, out)
        self._replan(out)
        return out

    def want_programme(self, tap: str, on: bool) -> Outcome:
        """A server-side listener (*tap*: the uplink, a gateway) starts or stops taking the
        programme; while any does (or recording is on) its sources are never paused."""
        out = Outcome()
        if on:
            self._programme_taps.add(tap)
        else:
            self._programme_taps.discard(tap)
        self._replan(out)
        return out

    def want_source(self, tap: str, source: SiteId, on: bool) -> Outcome:
        """A server-side viewer (*tap*: a WHEP player) starts or stops receiving *source*;
        while any does, the site's video and (unless muted) audio are not paused."""
        if source not in self.sites:
            raise NotFound(f"unknown site {source!r}")
        out = Outcome()
        if on:
            self._source_taps.add((tap, source))
        else:
            self._source_taps.discard((tap, source))
        self._replan(out)
        return out

    def set_recording(self, on: bool, now: float) -> Outcome:
        """The server turns recording on or off itself (the recorder could not start, or
        the disk failed): everyone is told, as when the chair flips the switch."""
        out = Outcome()
        if self.recording != on:
            self.recording = on
            out.facts.append(RecordingChanged(on, now))
            out.broadcast({"type": "recording", "on": on})
        self._replan(out)
        return out

    def set_media(self, session_id: SessionId, slots: Iterable[str]) -> Outcome:
        """The session's media is up with these receive slots; tell it what they carry."""
        out = Outcome()
        session = self._session(session_id)
        session.slots, session.sent_slots = tuple(slots), {}
        self._replan(out)
        return out

    def set_link(self, site_id: SiteId, rtt_ms: float, loss: float, kbps: float) -> Outcome:
        """Link quality measured by the media plane, shown to the chair and the status page."""
        out = Outcome()
        if site_id in self._state and self._state[site_id].online:
            self._state[site_id].link = {"rtt_ms": rtt_ms, "loss": loss, "kbps": kbps}
            out.broadcast(self._site_event(site_id))
        return out

    def set_camera(self, site_id: SiteId, state: str) -> Outcome:
        """A camera site's ingest state (the RTSP gateway: idle, connecting, live,
        retrying), shown in the roster; cameras are never "online" like a participant."""
        out = Outcome()
        site_state = self._state.get(site_id)
        if site_state is None or self.sites[site_id].level is not Level.CAMERA:
            raise NotFound(f"no camera site {site_id!r}")
        if site_state.camera != state:
            site_state.camera = state
            out.broadcast(self._site_event(site_id))
        return out

    def live_session(self, site_id: SiteId) -> SessionId | None:
        """The site's current session (attached, or detached within the grace period)."""
        return self._live.get(site_id)

    def audio_muted(self) -> frozenset[SiteId]:
        """Sites whose audio must not be forwarded."""
        return frozenset(sid for sid, st in self._state.items() if st.audio_muted)

    def session_site(self, session_id: SessionId) -> Site:
        return self._session(session_id).site

    def is_live(self, session_id: SessionId) -> bool:
        return session_id in self._sessions

    # -- time -------------------------------------------------------------------------------

    def tick(self, now: float) -> Outcome:
        """Advance everything driven by the clock: rejoin grace, roll-call timeout, polling."""
        out = Outcome()
        for session in list(self._sessions.values()):
            if session.detached_at is not None and now - session.detached_at >= self.grace:
                merged = self.leave(session.id, now)
                out.messages += merged.messages
                out.facts += merged.facts
        if self.rollcall is not None and self.rollcall.active and self.rollcall.overdue(now):
            result = self.rollcall.skip(now)
            if result is not None:
                out.facts.append(result)
            out.broadcast({"type": "rollcall", "state": self.rollcall.to_wire()})
        for (output, target), poll in list(self._polls.items()):
            if now >= poll.next_at:
                poll.next_at = now + poll.interval_s
                self._advance_poll(output, target, poll, out)
        self._replan(out)
        return out

    @property
    def grace(self) -> float:
        return self.config.rejoin_grace_s

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`tick` has something to do."""
        sessions = self._sessions.values()
        times = [s.detached_at + self.grace for s in sessions if s.detached_at is not None]
        if self.rollcall is not None and (deadline := self.rollcall.deadline()) is not None:
            times.append(deadline)
        times += [p.next_at for p in self._polls.values()]
        return min(times, default=None)

    # -- requests ---------------------------------------------------------------------------

    def handle(self, session_id: SessionId, request: m.Request, now: float) -> Outcome:
        """Carry out one conference-control request from a live session."""
        session = self._session(session_id)
        out = Outcome()
        site, role = session.site, session.site.role
        match request:
            case m.Floor(site=target):
                self._require(role, "give the floor", Role.CHAIR)
                checked = self._floor_target(target)
                self._stop_poll(("wall", "floor"), out)
                self._set_floor(checked, out)
            case m.Mute():
                self._mute(site, request, out)
            case m.MuteAll(audio=audio):
                self._require(role, "mute all", Role.CHAIR)
                out.result["count"] = self._mute_all(audio, out)
            case m.Hand():
                self._hand(site, request, out)
            case m.Rollcall():
                self._require(role, "run a roll call", Role.CHAIR)
                self._rollcall(request, now, out)
            case m.RollcallAck():
                if self.rollcall is None or self.rollcall.current != site.id:
                    raise Conflict("this site is not being called in a roll call")
                out.facts.append(self.rollcall.ack(site.id, now))
                out.broadcast({"type": "rollcall", "state": self.rollcall.to_wire()})
            case m.Poll():
                self._poll(role, request, now, out)
            case m.LayoutRequest(layout=layout):
                self._require(role, "change the wall layout", Role.OPERATOR, Role.CHAIR)
                self._set_layout(self._checked_layout(layout), out)
            case m.PresetSave(name=name):
                self._require(role, "save presets", Role.OPERATOR, Role.CHAIR)
                self.presets[name] = self.layouts["wall"] if "wall" in self.layouts else Layout()
                out.facts.append(PresetSaved(name, self.presets[name]))
                out.broadcast({"type": "presets", "names": sorted(self.presets)})
            case m.PresetLoad(name=name):
                self._require(role, "load presets", Role.OPERATOR, Role.CHAIR)
                if name not in self.presets:
                    raise NotFound(f"no preset named {name!r}")
                self._set_layout(self._checked_layout(self.presets[name]), out)
            case m.PresetDelete(name=name):
                self._require(role, "delete presets", Role.OPERATOR, Role.CHAIR)
                if self.presets.pop(name, None) is None:
                    raise NotFound(f"no preset named {name!r}")
                out.facts.append(PresetDeleted(name))
                out.broadcast({"type": "presets", "names": sorted(self.presets)})
            case m.Banner(text=text):
                self._require(role, "edit the banner", Role.OPERATOR, Role.CHAIR)
                self.banner = text
                out.broadcast({"type": "banner", "text": text})
            case m.Preview(slot=slot, source=source):
                self._require(role, "choose previews", Role.CHAIR, Role.OPERATOR)
                if slot not in session.slots:
                    raise NotFound(f"this session has no slot {slot!r} (offer it first)")
                if source is not None and source not in self.layouts:
                    self._displayable(SiteId(source))
                self._previews.setdefault(session_id, {})[slot] = source
                out.result["slot"] = slot
            case m.Record(on=on):
                self._require(role, "start or stop recording", Role.CHAIR)
                if self.recording != on:
                    self.recording = on
                    out.facts.append(RecordingChanged(on, now))
                    out.broadcast({"type": "recording", "on": on})
            case _:
                raise BadRequest(f"{type(request).__name__} is not a conference-control request")
        self._replan(out)
        return out

    # -- snapshots --------------------------------------------------------------------------

    def site_state(self, site_id: SiteId) -> Wire:
        site, state = self.sites[site_id], self._state[site_id]
        return {
            "id": site.id,
            "name": site.name,
            "level": site.level.value,
            "parent": site.parent,
            "role": site.role.value,
            "online": state.online,
            "since": state.since,
            "audio_muted": state.audio_muted,
            "video_muted": state.video_muted,
            "hand": state.hand,
            "link": state.link,
        } | ({"camera": state.camera} if site.level is Level.CAMERA else {})

    def snapshot(self) -> Wire:
        """PROTOCOL.md ``<snapshot>``, plus the project's additions (hands, polls, presets...)."""
        return {
            "id": self.config.conference_id,
            "title": self.config.title,
            "sites": [self.site_state(sid) for sid in self.sites],
            "chair": self.chair,
            "floor": self.floor,
            "rollcall": self.rollcall.to_wire() if self.rollcall else None,
            "layout": m.layout_to_wire(self.layouts.get("wall", Layout())),
            "layouts": {o: m.layout_to_wire(lay) for o, lay in self.layouts.items()},
            "recording": self.recording,
            "banner": self.banner,
            "hands": list(self._hands),
            "polls": [p.to_wire(o, t) for (o, t), p in self._polls.items()],
            "presets": sorted(self.presets),
        }

    def online(self) -> dict[SiteId, float]:
        """Online sites and since when (the status page)."""
        return {sid: st.since or 0.0 for sid, st in self._state.items() if st.online}

    # -- internals --------------------------------------------------------------------------

    def _session(self, session_id: SessionId) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise Conflict("this session has ended")
        return session

    @staticmethod
    def _require(role: Role, action: str, *allowed: Role) -> None:
        if role not in allowed:
            who = " or ".join(r.value for r in allowed)
            raise Forbidden(f"a {role.value} site may not {action}; only the {who} may")

    def _known(self, site_id: SiteId) -> Site:
        site = self.sites.get(site_id)
        if site is None:
            raise NotFound(f"no site {site_id!r}")
        return site

    def _site_event(self, site_id: SiteId) -> Wire:
        return {"type": "site", "site": self.site_state(site_id)}

    def _displayable(self, site_id: SiteId) -> Site:
        site = self._known(site_id)
        silent = site.role in (Role.WALL, Role.OPERATOR, Role.OBSERVER)
        if silent and site.level is not Level.CAMERA:
            raise BadRequest(f"site {site_id!r} ({site.role.value}) publishes no video to show")
        return site

    def _floor_target(self, target: SiteId | None) -> SiteId | None:
        if target is None or target == self.chair:
            return None
        site = self._known(target)
        if site.role not in SPEAKING_ROLES and site.level is not Level.CAMERA:
            raise BadRequest(f"site {target!r} ({site.role.value}) cannot take the floor")
        if site.level is not Level.CAMERA and not self._state[target].online:
            raise Conflict(f"site {target!r} ({site.name}) is offline")
        return target

    def _set_floor(self, target: SiteId | None, out: Outcome) -> None:
        if target is not None:
            state = self._state[target]
            self._lower_hand(target, out)  # giving the floor answers the raised hand
            if state.audio_muted:  # the chair gives the floor so the site can speak
                state.audio_muted = state.muted_by_chair = False
                self._tell_muted(target, out, audio=False)
            out.broadcast(self._site_event(target))
        if target != self.floor:
            self.floor = target
            out.broadcast({"type": "floor", "site": target})

    def _tell_muted(self, site_id: SiteId, out: Outcome, **what: bool) -> None:
        session = self._live.get(site_id)
        if session is not None:
            out.send(session, {"type": "muted", **what, "by": "chair"})

    def _mute(self, actor: Site, req: m.Mute, out: Outcome) -> None:
        target = self._known(req.site)
        state = self._state[target.id]
        by_chair = actor.role is Role.CHAIR
        if not by_chair:
            if target.id != actor.id or actor.role not in SPEAKING_ROLES:
                raise Forbidden("only the chair may mute another site")
            if req.audio is False and state.muted_by_chair:
                raise Forbidden("the chair muted this site; only the chair may unmute it")
        if req.audio is not None:
            state.audio_muted = req.audio
            if by_chair and target.id != actor.id:
                state.muted_by_chair = req.audio
            elif not req.audio:
                state.muted_by_chair = False
        if req.video is not None:
            state.video_muted = req.video
        if by_chair and target.id != actor.id:
            what = {k: v for k, v in (("audio", req.audio), ("video", req.video)) if v is not None}
            self._tell_muted(target.id, out, **what)
        out.broadcast(self._site_event(target.id))

    def _mute_all(self, audio: bool, out: Outcome) -> int:
        changed = 0
        for sid, site in self.sites.items():
            state = self._state[sid]
            if site.role not in SPEAKING_ROLES or sid == self.floor:
                continue
            if audio and not state.audio_muted:
                state.audio_muted = state.muted_by_chair = True
            elif not audio and state.audio_muted and state.muted_by_chair:
                state.audio_muted = state.muted_by_chair = False
            else:
                continue
            changed += 1
            self._tell_muted(sid, out, audio=audio)
            out.broadcast(self._site_event(sid))
        return changed

    def _hand(self, actor: Site, req: m.Hand, out: Outcome) -> None:
        if req.site is not None and req.site != actor.id:
            self._require(actor.role, "lower another site's hand", Role.CHAIR)
            if req.up:
                raise Forbidden("the chair may lower a raised hand, not raise one")
            target = self._known(req.site).id
        else:
            self._require(actor.role, "raise a hand", *SPEAKING_ROLES)
            target = actor.id
        state = self._state[target]
        if req.up and not state.hand:
            state.hand = True
            self._hands.append(target)
            out.broadcast(self._site_event(target))
            out.broadcast({"type": "hands", "queue": list(self._hands)})
        elif not req.up and self._lower_hand(target, out):
            out.broadcast(self._site_event(target))

    def _lower_hand(self, site_id: SiteId, out: Outcome) -> bool:
        """Lower a raised hand (the caller sends the site's event); tell everyone the queue."""
        state = self._state[site_id]
        if not state.hand:
            return False
        state.hand = False
        self._hands.remove(site_id)
        out.broadcast({"type": "hands", "queue": list(self._hands)})
        return True

    def _rollcall(self, req: m.Rollcall, now: float, out: Outcome) -> None:
        call = self.rollcall
        if req.action == "start":
            if call is not None and call.active:
                raise Conflict("a roll call is already running; stop it first")
            if req.sites is None:
                sites = [s.id for s in self.sites.values() if s.role is Role.TERMINAL]
            else:
                sites = list(dict.fromkeys(req.sites))
                for sid in sites:
                    if self._known(sid).role not in SPEAKING_ROLES:
                        raise BadRequest(f"site {sid!r} cannot answer a roll call")
            if not sites:
                raise BadRequest("rollcall: no sites to call")
            timeout = self.config.rollcall_timeout_s
            self.rollcall = RollCall.start(next(self._rounds), sites, now, timeout)
        else:
            if call is None or not call.active:
                raise Conflict("no roll call is running")
            result = call.skip(now) if req.action == "next" else call.stop(now)
            if result is not None:
                out.facts.append(result)
        assert self.rollcall is not None
        out.broadcast({"type": "rollcall", "state": self.rollcall.to_wire()})

    def _poll(self, role: Role, req: m.Poll, now: float, out: Outcome) -> None:
        if req.output not in self.layouts:
            raise NotFound(f"no wall output {req.output!r}")
        if req.target == "floor":
            self._require(role, "poll the floor", Role.CHAIR)
            key: PollKey = ("wall", "floor")
            for sid in req.sites:
                self._floor_target_site(sid)
        else:
            self._require(role, "poll a wall tile", Role.OPERATOR, Role.CHAIR)
            tiles = self.layouts[req.output].tiles
            if not isinstance(req.target, int) or not 0 <= req.target < len(tiles):
                raise NotFound(f"no tile {req.target} in output {req.output!r}")
            key = (req.output, req.target)
            for sid in req.sites:
                self._displayable(sid)
        if not req.sites:
            self._stop_poll(key, out)
            return
        poll = _Poll(tuple(req.sites), req.interval_s, -1, now + req.interval_s)
        self._polls[key] = poll
        self._advance_poll(key[0], key[1], poll, out)

    def _floor_target_site(self, sid: SiteId) -> None:
        site = self._known(sid)
        if site.role not in SPEAKING_ROLES and site.level is not Level.CAMERA:
            raise BadRequest(f"site {sid!r} ({site.role.value}) cannot take the floor")

    def _advance_poll(self, output: str, target: str | int, poll: _Poll, out: Outcome) -> None:
        n = len(poll.sites)
        for step in range(1, n + 1):  # floor polls skip offline sites
            candidate = poll.sites[(poll.index + step) % n]
            camera = self.sites[candidate].level is Level.CAMERA
            if target != "floor" or camera or self._state[candidate].online:
                poll.index = (poll.index + step) % n
                break
        else:  # every polled site is offline: nobody to show
            poll.index = -1
            out.broadcast({"type": "poll", **poll.to_wire(output, target)})
            return
        source = poll.sites[poll.index]
        if target == "floor":
            self._set_floor(source, out)
        else:
            assert isinstance(target, int)
            layout = self.layouts[output]
            tiles = list(layout.tiles)
            tiles[target] = Tile(source, tiles[target].rect)
            self.layouts[output] = Layout(layout.output, layout.kind, tuple(tiles))
            out.broadcast({"type": "layout", "layout": m.layout_to_wire(self.layouts[output])})
        out.broadcast({"type": "poll", **poll.to_wire(output, target)})

    def _stop_poll(self, key: PollKey, out: Outcome) -> None:
        if self._polls.pop(key, None) is not None:
            out.broadcast({"type": "poll", "output": key[0], "target": key[1], "sites": []})

    def _checked_layout(self, layout: Layout) -> Layout:
        if layout.output not in self.layouts:
            raise NotFound(f"no wall output {layout.output!r}")
        for tile in layout.tiles:
            if tile.source is not None:
                self._displayable(tile.source)
        if layout.kind == "custom":
            try:
                validate_custom([t.rect for t in layout.tiles if t.rect is not None])
            except LayoutError as exc:
                raise BadRequest(f"layout: {exc}") from None
        return layout

    def _set_layout(self, layout: Layout, out: Outcome) -> None:
        for key in [k for k in self._polls if k[0] == layout.output and k[1] != "floor"]:
            self._stop_poll(key, out)
        self.layouts[layout.output] = layout
        out.broadcast({"type": "layout", "layout": m.layout_to_wire(layout)})

    def _compute_plan(self) -> RoutingPlan:
        views = [
            SubscriberView(s.id, s.site.id, s.site.role, s.slots, output=self.config.outputs[0])
            for s in self._sessions.values()
            if s.slots
        ]
        muted = self.audio_muted()
        wall = [t.source for lay in self.layouts.values() for t in lay.tiles if t.source]
        upcoming = [
            p.sites[(p.index + 1) % len(p.sites)] for p in self._polls.values() if len(p.sites) > 1
        ]
        return compute_plan(
            chair=self.chair,
            floor=self.floor,
            sessions=views,
            previews=self._previews,
            audio_muted=muted,
            wall_sources=wall,
            upcoming=upcoming,
            programme_wanted=self.recording or bool(self._programme_taps),
            watched=sorted({site for _, site in self._source_taps}),
            wall_limits=self._wall_limits(),
        )

    def _wall_limits(self) -> dict[SiteId, VideoLimit]:
        """How much of each site's video the wall outputs need: the largest of the tiles that
        show it or poll through it. Sites the floor poll goes through are left out: the next
        one takes the floor, where its full picture is wanted at once."""
        geometry = self.config.wall
        if geometry is None:
            return {}
        limits: dict[SiteId, VideoLimit] = {}
        unlimited: set[SiteId] = set()  # in a tile whose size is unknown, or the floor poll
        for output, layout in self.layouts.items():
            for index, (tile, limit) in enumerate(
                zip(layout.tiles, geometry.limits(layout, self.banner), strict=True)
            ):
                poll = self._polls.get((output, index))
                sites = [tile.source] if tile.source is not None else []
                sites.extend(poll.sites if poll is not None else ())
                for site in sites:
                    if limit is None:
                        unlimited.add(site)
                    else:
                        limits[site] = limit.merge(limits.get(site))
        floor_poll = self._polls.get(("wall", "floor"))
        unlimited.update(floor_poll.sites if floor_poll is not None else ())
        return {site: limit for site, limit in limits.items() if site not in unlimited}

    def _replan(self, out: Outcome) -> None:
        """Recompute the routing plan; tell media-connected sessions what changed for them."""
        self.plan = plan = self._compute_plan()
        for session in self._sessions.values():
            if not session.slots or session.detached_at is not None:
                continue
            route = plan.route(session.id)
            if route is not None:
                assign = {
                    slot: {"source": src, "label": self._label(src)}
                    for slot, src in route.video.items()
                }
                changed = {k: v for k, v in assign.items() if session.sent_slots.get(k) != v}
                if changed:
                    session.sent_slots.update(changed)
                    out.send(session.id, {"type": "slots", "assign": changed})
            sid = session.site.id
            needed = plan.video_needed | plan.upcoming
            limit = plan.video_limits.get(sid) if sid in needed else None
            pause = (sid not in needed, sid not in plan.audio_needed, limit)
            if session.site.role in SPEAKING_ROLES | {Role.CHAIR} and pause != session.sent_pause:
                session.sent_pause = pause
                message: Wire = {"type": "pause", "video": pause[0], "audio": pause[1]}
                if limit is not None:
                    message["video_limit"] = limit.to_wire()
                out.send(session.id, message)

    def _label(self, source: Source | None) -> str:
        if source is None:
            return ""
        site = self.sites.get(SiteId(source))
        return site.name if site is not None else source
