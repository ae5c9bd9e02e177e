"""The conference as a pure state machine (``signalling.conference``): plain calls, explicit
``now`` values, no event loop, no sockets (ARCHITECTURE.md, signalling/; PROTOCOL.md,
Session and Conference control).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from signalling import messages as m
from signalling.conference import (
    CLOSE_REPLACED,
    Conference,
    ConferenceConfig,
    Outcome,
    PresetDeleted,
    PresetSaved,
    RecordingChanged,
    RollcallResult,
    SiteJoined,
    SiteLeft,
    WallGeometry,
)
from signalling.errors import BadRequest, Conflict, Forbidden, NotFound, SignallingError
from signalling.model import Layout, Level, Role, SessionId, Site, SiteId, Tile
from signalling.routing import VideoLimit

CHAIR = SiteId("tianhe")
ZHUJI = SiteId("tianhe.zhuji")
XIANCUN = SiteId("tianhe.xiancun")
LIEDE = SiteId("tianhe.liede")
ZHUJI_C1 = SiteId("tianhe.zhuji.c1")
OPERATOR = SiteId("tianhe.operator")
WALL = SiteId("tianhe.wall")
UPLINK = SiteId("guangzhou")
CAMERA = SiteId("tianhe.cam1")

SITES = (
    Site(CHAIR, "天河区指挥中心", Level.DISTRICT, Role.CHAIR),
    Site(ZHUJI, "珠吉街", Level.STREET, Role.TERMINAL, CHAIR),
    Site(XIANCUN, "冼村街", Level.STREET, Role.TERMINAL, CHAIR),
    Site(LIEDE, "猎德街", Level.STREET, Role.TERMINAL, CHAIR),
    Site(ZHUJI_C1, "珠村社区", Level.COMMUNITY, Role.TERMINAL, ZHUJI),
    Site(OPERATOR, "大屏操作台", Level.CONTROL, Role.OPERATOR, CHAIR),
    Site(WALL, "大屏", Level.CONTROL, Role.WALL, CHAIR),
    Site(UPLINK, "广州市应急指挥中心", Level.UPLINK, Role.UPLINK),
    Site(CAMERA, "猎德大桥摄像头", Level.CAMERA, Role.OBSERVER, LIEDE),
)
TERMINALS = [ZHUJI, XIANCUN, LIEDE, ZHUJI_C1]
NAMES = {s.id: s.name for s in SITES}

GRACE = 15.0
ROLLCALL_TIMEOUT = 30.0


class Harness:
    """A conference plus one session per joined site, named ``s:<site>`` (``#n`` on rejoin)."""

    def __init__(self, wall: WallGeometry | None = None) -> None:
        config = ConferenceConfig(
            "tianhe-2026",
            "防汛会商",
            rejoin_grace_s=GRACE,
            rollcall_timeout_s=ROLLCALL_TIMEOUT,
            wall=wall,
        )
        self.c = Conference(SITES, config)
        self.session: dict[SiteId, SessionId] = {}
        self._count = 0

    def join(self, site: SiteId, now: float = 0.0) -> Outcome:
        self._count += 1
        session = SessionId(f"s:{site}" if site not in self.session else f"s:{site}#{self._count}")
        self.session[site] = session
        return self.c.join(site, session, now)

    def do(self, who: SiteId, now: float = 0.0, /, **fields: Any) -> Outcome:
        """Send one request from *site*'s current session, through the real parser."""
        request = m.parse(json.dumps(fields, ensure_ascii=False))
        return self.c.handle(self.session[who], request, now)

    def state(self, site: SiteId) -> dict[str, Any]:
        return self.c.site_state(site)

    def media(self, *sites: SiteId) -> Outcome:
        out = Outcome()
        for site in sites:
            got = self.c.set_media(self.session[site], ["main"])
            out.messages += got.messages
        return out


@pytest.fixture
def h() -> Harness:
    return Harness()


@pytest.fixture
def busy(h: Harness) -> Harness:
    """Chair, the four terminals, operator, wall and uplink online (the camera is not)."""
    for site in (CHAIR, *TERMINALS, OPERATOR, WALL, UPLINK):
        h.join(site, 0.0)
    return h


def of_type(out: Outcome, kind: str) -> list[dict[str, Any]]:
    return [msg for _, msg in out.messages if msg["type"] == kind]


def broadcasts(out: Outcome, kind: str) -> list[dict[str, Any]]:
    return [msg for to, msg in out.messages if to is None and msg["type"] == kind]


def sent_to(out: Outcome, session: SessionId, kind: str) -> list[dict[str, Any]]:
    return [msg for to, msg in out.messages if to == (session,) and msg["type"] == kind]


def site_events(out: Outcome, site: SiteId) -> list[dict[str, Any]]:
    return [e["site"] for e in broadcasts(out, "site") if e["site"]["id"] == site]


# -- presence --------------------------------------------------------------------------------


def test_initial_snapshot_lists_every_site_offline(h: Harness) -> None:
    snap = h.c.snapshot()
    assert [s["id"] for s in snap["sites"]] == [s.id for s in SITES]
    assert not any(s["online"] for s in snap["sites"])
    assert snap["floor"] is None and snap["rollcall"] is None and snap["recording"] is False
    assert snap["banner"] == "" and snap["chair"] == CHAIR
    assert snap["layout"] == {"output": "wall", "kind": "1", "tiles": [{"source": None}]}
    names = {s["id"]: s["name"] for s in snap["sites"]}
    assert names[ZHUJI] == "珠吉街"
    assert "珠吉街" in m.serialize(snap)
    assert h.c.next_deadline() is None


def test_join_puts_the_site_online(h: Harness) -> None:
    out = h.join(ZHUJI, 5.0)
    assert out.facts == [SiteJoined(ZHUJI, 5.0)]
    assert out.closes == []
    [event] = site_events(out, ZHUJI)
    assert event["online"] is True and event["name"] == "珠吉街" and event["level"] == "street"
    assert event["parent"] == CHAIR and event["link"] is None
    assert h.state(ZHUJI)["online"] is True
    assert h.c.online() == {ZHUJI: 5.0}
    assert h.c.is_live(h.session[ZHUJI])
    assert h.c.session_site(h.session[ZHUJI]).name == "珠吉街"


def test_leave_puts_the_site_offline(h: Harness) -> None:
    h.join(ZHUJI, 5.0)
    out = h.c.leave(h.session[ZHUJI], 9.0)
    assert out.facts == [SiteLeft(ZHUJI, 9.0)]
    [event] = site_events(out, ZHUJI)
    assert event["online"] is False
    assert h.c.online() == {}
    assert not h.c.is_live(h.session[ZHUJI])
    assert h.c.leave(h.session[ZHUJI], 10.0).facts == []  # idempotent


def test_second_join_replaces_the_first_session(h: Harness) -> None:
    h.join(ZHUJI, 1.0)
    first = h.session[ZHUJI]
    out = h.join(ZHUJI, 2.0)
    second = h.session[ZHUJI]
    assert second != first
    assert [(s, code) for s, code, _ in out.closes] == [(first, CLOSE_REPLACED)]
    assert CLOSE_REPLACED == 4409
    assert out.facts == []  # no duplicate SiteJoined
    assert site_events(out, ZHUJI) == []
    assert h.state(ZHUJI)["online"] is True and h.state(ZHUJI)["since"] == 1.0
    assert not h.c.is_live(first) and h.c.is_live(second)
    # the stale session's late leave does not take the site offline
    assert h.c.leave(first, 3.0).facts == []
    assert h.state(ZHUJI)["online"] is True
    with pytest.raises(Conflict):
        h.c.handle(first, m.Hand(up=True), 4.0)


def test_detach_and_rejoin_within_grace_resumes_silently(h: Harness) -> None:
    h.join(ZHUJI, 0.0)
    first = h.session[ZHUJI]
    assert h.c.detach(first, 10.0).messages == []
    assert h.state(ZHUJI)["online"] is True
    assert h.c.next_deadline() == 10.0 + GRACE
    out = h.join(ZHUJI, 20.0)
    assert out.closes == []  # the detached socket is already gone
    assert out.facts == [] and out.messages == []
    assert h.c.next_deadline() is None
    out = h.c.tick(100.0)
    assert out.facts == []
    assert h.state(ZHUJI)["online"] is True


def test_grace_expiry_takes_the_site_offline(h: Harness) -> None:
    h.join(ZHUJI, 0.0)
    h.do(ZHUJI, 1.0, type="hand", up=True)
    h.c.detach(h.session[ZHUJI], 10.0)
    assert h.c.tick(10.0 + GRACE - 0.1).facts == []
    assert h.state(ZHUJI)["online"] is True
    out = h.c.tick(10.0 + GRACE)
    assert out.facts == [SiteLeft(ZHUJI, 10.0 + GRACE)]
    [event] = site_events(out, ZHUJI)
    assert event["online"] is False and event["hand"] is False
    assert h.c.snapshot()["hands"] == []
    assert not h.c.is_live(h.session[ZHUJI])
    assert h.c.next_deadline() is None


def test_next_deadline_of_a_session_detached_at_time_zero(h: Harness) -> None:
    h.join(ZHUJI, 0.0)
    h.c.detach(h.session[ZHUJI], 0.0)
    assert h.c.next_deadline() == GRACE


def test_requests_from_an_ended_session_conflict(busy: Harness) -> None:
    session = busy.session[ZHUJI]
    busy.c.leave(session, 1.0)
    with pytest.raises(Conflict):
        busy.c.handle(session, m.Hand(up=True), 2.0)
    with pytest.raises(Conflict):
        busy.c.handle(SessionId("never-joined"), m.Ping(), 2.0)
    with pytest.raises(Conflict):
        busy.c.set_media(session, ["main"])


@pytest.mark.parametrize("request_", [m.Ping(), m.Leave(), m.Offer(sdp="v=0"), m.Hello("t")])
def test_non_control_requests_are_bad_requests(busy: Harness, request_: m.Request) -> None:
    with pytest.raises(BadRequest):
        busy.c.handle(busy.session[CHAIR], request_, 1.0)


def test_link_quality_is_shown_while_online(busy: Harness) -> None:
    out = busy.c.set_link(ZHUJI, 35.0, 0.01, 1200.0)
    [event] = site_events(out, ZHUJI)
    assert event["link"] == {"rtt_ms": 35.0, "loss": 0.01, "kbps": 1200.0}
    assert busy.c.set_link(CAMERA, 1.0, 0.0, 1.0).messages == []
    busy.c.leave(busy.session[ZHUJI], 2.0)
    assert busy.state(ZHUJI)["link"] is None


# -- floor -----------------------------------------------------------------------------------


def test_chair_gives_and_takes_back_the_floor(busy: Harness) -> None:
    out = busy.do(CHAIR, 1.0, type="floor", site=ZHUJI, id=1)
    assert busy.c.floor == ZHUJI
    assert broadcasts(out, "floor") == [{"type": "floor", "site": ZHUJI}]
    assert busy.c.snapshot()["floor"] == ZHUJI
    out = busy.do(CHAIR, 2.0, type="floor", site=None)
    assert busy.c.floor is None
    assert broadcasts(out, "floor") == [{"type": "floor", "site": None}]
    busy.do(CHAIR, 3.0, type="floor", site=XIANCUN)
    busy.do(CHAIR, 4.0, type="floor", site=CHAIR)  # the chair's own id: back to the chair
    assert busy.c.floor is None


@pytest.mark.parametrize("who", [ZHUJI, OPERATOR, WALL, UPLINK])
def test_only_the_chair_gives_the_floor(busy: Harness, who: SiteId) -> None:
    with pytest.raises(Forbidden):
        busy.do(who, 1.0, type="floor", site=XIANCUN)
    assert busy.c.floor is None


def test_floor_refusals(busy: Harness) -> None:
    with pytest.raises(NotFound):
        busy.do(CHAIR, 1.0, type="floor", site="tianhe.nowhere")
    busy.c.leave(busy.session[LIEDE], 1.0)
    with pytest.raises(Conflict):
        busy.do(CHAIR, 2.0, type="floor", site=LIEDE)
    for silent in (WALL, OPERATOR):
        with pytest.raises(BadRequest):
            busy.do(CHAIR, 3.0, type="floor", site=silent)
    assert busy.c.floor is None


def test_uplink_and_camera_may_take_the_floor(busy: Harness) -> None:
    busy.do(CHAIR, 1.0, type="floor", site=UPLINK)
    assert busy.c.floor == UPLINK
    busy.do(CHAIR, 2.0, type="floor", site=CAMERA)  # cameras count as always available
    assert busy.c.floor == CAMERA


def test_floor_lowers_the_hand_and_unmutes(busy: Harness) -> None:
    busy.do(ZHUJI, 1.0, type="hand", up=True)
    busy.do(XIANCUN, 1.5, type="hand", up=True)
    busy.do(CHAIR, 2.0, type="mute", site=ZHUJI, audio=True)
    assert busy.state(ZHUJI)["audio_muted"] is True
    out = busy.do(CHAIR, 3.0, type="floor", site=ZHUJI)
    state = busy.state(ZHUJI)
    assert state["hand"] is False and state["audio_muted"] is False
    assert busy.c.snapshot()["hands"] == [XIANCUN]
    assert sent_to(out, busy.session[ZHUJI], "muted") == [
        {"type": "muted", "audio": False, "by": "chair"}
    ]
    assert site_events(out, ZHUJI)[-1]["hand"] is False


def test_floor_lowering_a_hand_sends_the_hands_queue(busy: Harness) -> None:
    busy.do(ZHUJI, 1.0, type="hand", up=True)
    busy.do(LIEDE, 1.5, type="hand", up=True)
    out = busy.do(CHAIR, 2.0, type="floor", site=ZHUJI)
    assert broadcasts(out, "hands") == [{"type": "hands", "queue": [LIEDE]}]
    out = busy.c.leave(busy.session[LIEDE], 3.0)
    assert broadcasts(out, "hands") == [{"type": "hands", "queue": []}]
    assert of_type(busy.c.leave(busy.session[XIANCUN], 4.0), "hands") == []  # no hand up


def test_floor_holder_leaving_returns_the_floor_to_the_chair(busy: Harness) -> None:
    busy.do(CHAIR, 1.0, type="floor", site=ZHUJI)
    out = busy.c.leave(busy.session[ZHUJI], 2.0)
    assert busy.c.floor is None
    assert broadcasts(out, "floor") == [{"type": "floor", "site": None}]


def test_floor_holder_grace_expiry_returns_the_floor(busy: Harness) -> None:
    busy.do(CHAIR, 1.0, type="floor", site=ZHUJI)
    busy.c.detach(busy.session[ZHUJI], 2.0)
    assert busy.c.floor == ZHUJI  # still within grace
    out = busy.c.tick(2.0 + GRACE)
    assert busy.c.floor is None
    assert broadcasts(out, "floor") == [{"type": "floor", "site": None}]


# -- mute ------------------------------------------------------------------------------------


def test_chair_mutes_a_site_and_tells_it(busy: Harness) -> None:
    out = busy.do(CHAIR, 1.0, type="mute", site=ZHUJI, audio=True)
    assert busy.state(ZHUJI)["audio_muted"] is True
    assert [(to, msg) for to, msg in out.messages if msg["type"] == "muted"] == [
        ((busy.session[ZHUJI],), {"type": "muted", "audio": True, "by": "chair"})
    ]
    assert site_events(out, ZHUJI)[-1]["audio_muted"] is True
    out = busy.do(CHAIR, 2.0, type="mute", site=ZHUJI, video=True)
    assert busy.state(ZHUJI)["video_muted"] is True and busy.state(ZHUJI)["audio_muted"]
    assert sent_to(out, busy.session[ZHUJI], "muted") == [
        {"type": "muted", "video": True, "by": "chair"}
    ]
    busy.do(CHAIR, 3.0, type="mute", site=ZHUJI, audio=False)
    assert busy.state(ZHUJI)["audio_muted"] is False


def test_chair_mutes_an_offline_site_without_a_message(busy: Harness) -> None:
    busy.c.leave(busy.session[LIEDE], 1.0)
    out = busy.do(CHAIR, 2.0, type="mute", site=LIEDE, audio=True)
    assert of_type(out, "muted") == []
    assert busy.state(LIEDE)["audio_muted"] is True
    with pytest.raises(NotFound):
        busy.do(CHAIR, 3.0, type="mute", site="nowhere", audio=True)


def test_terminal_mutes_and_unmutes_itself(busy: Harness) -> None:
    out = busy.do(ZHUJI, 1.0, type="mute", site=ZHUJI, audio=True, video=True)
    assert busy.state(ZHUJI)["audio_muted"] and busy.state(ZHUJI)["video_muted"]
    assert of_type(out, "muted") == []  # nobody to tell: it did it itself
    busy.do(ZHUJI, 2.0, type="mute", site=ZHUJI, audio=False, video=False)
    assert not busy.state(ZHUJI)["audio_muted"] and not busy.state(ZHUJI)["video_muted"]


def test_mute_permissions(busy: Harness) -> None:
    with pytest.raises(Forbidden):
        busy.do(ZHUJI, 1.0, type="mute", site=XIANCUN, audio=True)
    with pytest.raises(Forbidden):
        busy.do(ZHUJI, 1.0, type="mute", site=CHAIR, audio=True)
    for who in (WALL, OPERATOR):
        with pytest.raises(Forbidden):
            busy.do(who, 1.0, type="mute", site=who, audio=True)
        with pytest.raises(Forbidden):
            busy.do(who, 1.0, type="mute", site=ZHUJI, audio=True)
    assert not any(s["audio_muted"] for s in busy.c.snapshot()["sites"])


def test_terminal_may_not_unmute_a_chair_mute(busy: Harness) -> None:
    busy.do(CHAIR, 1.0, type="mute", site=ZHUJI, audio=True)
    with pytest.raises(Forbidden):
        busy.do(ZHUJI, 2.0, type="mute", site=ZHUJI, audio=False)
    assert busy.state(ZHUJI)["audio_muted"] is True
    busy.do(ZHUJI, 3.0, type="mute", site=ZHUJI, video=True)  # its own camera is its own
    assert busy.state(ZHUJI)["video_muted"] is True


def test_terminal_cannot_escape_a_chair_mute_by_muting_itself(busy: Harness) -> None:
    busy.do(CHAIR, 1.0, type="mute", site=ZHUJI, audio=True)
    busy.do(ZHUJI, 2.0, type="mute", site=ZHUJI, audio=True)
    with pytest.raises(Forbidden):
        busy.do(ZHUJI, 3.0, type="mute", site=ZHUJI, audio=False)
    assert busy.state(ZHUJI)["audio_muted"] is True
    busy.do(CHAIR, 4.0, type="mute", site=ZHUJI, audio=False)  # the chair lifts it
    busy.do(ZHUJI, 5.0, type="mute", site=ZHUJI, audio=True)  # now its own mute again
    busy.do(ZHUJI, 6.0, type="mute", site=ZHUJI, audio=False)
    assert busy.state(ZHUJI)["audio_muted"] is False


def test_mute_all_skips_the_floor_holder_and_the_chair(busy: Harness) -> None:
    busy.do(CHAIR, 1.0, type="floor", site=XIANCUN)
    out = busy.do(CHAIR, 2.0, type="mute_all", audio=True, id="ma")
    muted = {s["id"] for s in busy.c.snapshot()["sites"] if s["audio_muted"]}
    assert muted == {ZHUJI, LIEDE, ZHUJI_C1, UPLINK}
    assert out.result == {"count": 4}
    assert len(of_type(out, "muted")) == 4
    assert sent_to(out, busy.session[ZHUJI], "muted") == [
        {"type": "muted", "audio": True, "by": "chair"}
    ]
    assert sent_to(out, busy.session[CHAIR], "muted") == []
    assert sent_to(out, busy.session[XIANCUN], "muted") == []
    # nothing left to mute
    assert busy.do(CHAIR, 3.0, type="mute_all", audio=True).result == {"count": 0}


def test_unmute_all_only_undoes_chair_mutes(busy: Harness) -> None:
    busy.do(ZHUJI, 1.0, type="mute", site=ZHUJI, audio=True)  # its own choice
    out = busy.do(CHAIR, 2.0, type="mute_all", audio=True)
    assert out.result == {"count": 4}  # xiancun, liede, c1, uplink; zhuji was muted already
    out = busy.do(CHAIR, 3.0, type="mute_all", audio=False)
    assert out.result == {"count": 4}
    assert busy.state(ZHUJI)["audio_muted"] is True
    assert not busy.state(XIANCUN)["audio_muted"]
    assert sent_to(out, busy.session[ZHUJI], "muted") == []
    assert sent_to(out, busy.session[XIANCUN], "muted") == [
        {"type": "muted", "audio": False, "by": "chair"}
    ]


@pytest.mark.parametrize("who", [ZHUJI, OPERATOR, WALL])
def test_only_the_chair_mutes_all(busy: Harness, who: SiteId) -> None:
    with pytest.raises(Forbidden):
        busy.do(who, 1.0, type="mute_all", audio=True)


# -- hands -----------------------------------------------------------------------------------


def test_raised_hands_queue_in_order(busy: Harness) -> None:
    queues = []
    for site in (LIEDE, ZHUJI, UPLINK):
        out = busy.do(site, 1.0, type="hand", up=True)
        [hands] = broadcasts(out, "hands")
        queues.append(hands["queue"])
        assert site_events(out, site)[-1]["hand"] is True
    assert queues == [[LIEDE], [LIEDE, ZHUJI], [LIEDE, ZHUJI, UPLINK]]
    assert busy.do(ZHUJI, 2.0, type="hand", up=True).messages == []  # already up
    out = busy.do(ZHUJI, 3.0, type="hand", up=False)
    assert broadcasts(out, "hands") == [{"type": "hands", "queue": [LIEDE, UPLINK]}]
    out = busy.do(CHAIR, 4.0, type="hand", up=False, site=LIEDE)  # the chair lowers one
    assert broadcasts(out, "hands") == [{"type": "hands", "queue": [UPLINK]}]
    assert busy.c.snapshot()["hands"] == [UPLINK]
    busy.do(ZHUJI, 5.0, type="hand", up=True)
    assert busy.c.snapshot()["hands"] == [UPLINK, ZHUJI]


def test_hand_permissions(busy: Harness) -> None:
    busy.do(LIEDE, 1.0, type="hand", up=True)
    with pytest.raises(Forbidden):
        busy.do(CHAIR, 2.0, type="hand", up=True)  # the chair raises no hand
    with pytest.raises(Forbidden):
        busy.do(CHAIR, 2.0, type="hand", up=True, site=ZHUJI)  # nor someone else's
    with pytest.raises(Forbidden):
        busy.do(ZHUJI, 2.0, type="hand", up=False, site=LIEDE)
    for who in (WALL, OPERATOR):
        with pytest.raises(Forbidden):
            busy.do(who, 2.0, type="hand", up=True)
    with pytest.raises(NotFound):
        busy.do(CHAIR, 2.0, type="hand", up=False, site="nowhere")
    assert busy.c.snapshot()["hands"] == [LIEDE]


def test_leaving_lowers_the_hand(busy: Harness) -> None:
    busy.do(LIEDE, 1.0, type="hand", up=True)
    busy.do(ZHUJI, 1.0, type="hand", up=True)
    busy.c.leave(busy.session[LIEDE], 2.0)
    assert busy.c.snapshot()["hands"] == [ZHUJI]
    assert busy.state(LIEDE)["hand"] is False


# -- roll call -------------------------------------------------------------------------------


def rollcall_state(out: Outcome) -> dict[str, Any]:
    [event] = broadcasts(out, "rollcall")
    state: dict[str, Any] = event["state"]
    return state


def test_rollcall_default_calls_every_terminal_in_directory_order(busy: Harness) -> None:
    out = busy.do(CHAIR, 100.0, type="rollcall", action="start", id="rc")
    state = rollcall_state(out)
    assert state["active"] is True and state["current"] == ZHUJI
    assert state["pending"] == [XIANCUN, LIEDE, ZHUJI_C1]
    assert state["acked"] == [] and state["missed"] == []
    assert busy.c.snapshot()["rollcall"]["current"] == ZHUJI


def test_rollcall_includes_offline_terminals_by_default(h: Harness) -> None:
    h.join(CHAIR)
    state = rollcall_state(h.do(CHAIR, 1.0, type="rollcall", action="start"))
    assert [state["current"], *state["pending"]] == TERMINALS


def test_rollcall_ack_next_stop(busy: Harness) -> None:
    busy.do(CHAIR, 100.0, type="rollcall", action="start", sites=[LIEDE, UPLINK, LIEDE, ZHUJI])
    assert busy.c.rollcall is not None and busy.c.rollcall.current == LIEDE
    assert busy.c.rollcall.pending == [UPLINK, ZHUJI]  # duplicates called once
    with pytest.raises(Conflict):
        busy.do(ZHUJI, 101.0, type="rollcall_ack")  # not being called
    out = busy.do(LIEDE, 102.0, type="rollcall_ack")
    assert out.facts == [RollcallResult(1, LIEDE, "acked", 102.0)]
    state = rollcall_state(out)
    assert state["current"] == UPLINK and state["acked"] == [LIEDE]
    with pytest.raises(Conflict):
        busy.do(LIEDE, 103.0, type="rollcall_ack")  # already answered
    out = busy.do(CHAIR, 104.0, type="rollcall", action="next")
    assert out.facts == [RollcallResult(1, UPLINK, "missed", 104.0)]
    assert rollcall_state(out)["current"] == ZHUJI
    out = busy.do(CHAIR, 105.0, type="rollcall", action="stop")
    assert out.facts == [RollcallResult(1, ZHUJI, "missed", 105.0)]
    state = rollcall_state(out)
    assert state["active"] is False and state["current"] is None
    assert state["acked"] == [LIEDE] and state["missed"] == [UPLINK, ZHUJI]
    assert state["pending"] == []


def test_rollcall_stop_leaves_uncalled_sites_pending(busy: Harness) -> None:
    busy.do(CHAIR, 1.0, type="rollcall", action="start")
    state = rollcall_state(busy.do(CHAIR, 2.0, type="rollcall", action="stop"))
    assert state["missed"] == [ZHUJI]
    assert state["pending"] == [XIANCUN, LIEDE, ZHUJI_C1]
    assert busy.c.next_deadline() is None


def test_rollcall_round_ends_after_the_last_answer(busy: Harness) -> None:
    busy.do(CHAIR, 1.0, type="rollcall", action="start", sites=[ZHUJI, XIANCUN])
    busy.do(ZHUJI, 2.0, type="rollcall_ack")
    state = rollcall_state(busy.do(XIANCUN, 3.0, type="rollcall_ack"))
    assert state["active"] is False and state["acked"] == [ZHUJI, XIANCUN]
    with pytest.raises(Conflict):
        busy.do(CHAIR, 4.0, type="rollcall", action="next")
    state = rollcall_state(busy.do(CHAIR, 5.0, type="rollcall", action="start", sites=[LIEDE]))
    assert state["round"] == 2 and state["current"] == LIEDE


def test_rollcall_timeout_via_tick(busy: Harness) -> None:
    busy.do(CHAIR, 100.0, type="rollcall", action="start", sites=[ZHUJI, XIANCUN])
    assert busy.c.next_deadline() == 100.0 + ROLLCALL_TIMEOUT
    assert busy.c.tick(100.0 + ROLLCALL_TIMEOUT - 0.5).messages == []
    out = busy.c.tick(100.0 + ROLLCALL_TIMEOUT)
    assert out.facts == [RollcallResult(1, ZHUJI, "missed", 130.0)]
    assert rollcall_state(out)["current"] == XIANCUN
    assert busy.c.next_deadline() == 130.0 + ROLLCALL_TIMEOUT
    out = busy.c.tick(200.0)
    assert out.facts == [RollcallResult(1, XIANCUN, "missed", 200.0)]
    assert rollcall_state(out)["active"] is False
    assert busy.c.next_deadline() is None


def test_rollcall_refusals(busy: Harness) -> None:
    with pytest.raises(Conflict):
        busy.do(CHAIR, 1.0, type="rollcall", action="next")
    with pytest.raises(Conflict):
        busy.do(CHAIR, 1.0, type="rollcall", action="stop")
    with pytest.raises(Conflict):
        busy.do(ZHUJI, 1.0, type="rollcall_ack")
    with pytest.raises(NotFound):
        busy.do(CHAIR, 1.0, type="rollcall", action="start", sites=[ZHUJI, "nowhere"])
    with pytest.raises(BadRequest):
        busy.do(CHAIR, 1.0, type="rollcall", action="start", sites=[WALL])
    with pytest.raises(BadRequest):
        busy.do(CHAIR, 1.0, type="rollcall", action="start", sites=[])
    for who in (ZHUJI, OPERATOR):
        with pytest.raises(Forbidden):
            busy.do(who, 1.0, type="rollcall", action="start")
    assert busy.c.rollcall is None
    busy.do(CHAIR, 2.0, type="rollcall", action="start")
    with pytest.raises(Conflict):
        busy.do(CHAIR, 3.0, type="rollcall", action="start")
    with pytest.raises(Forbidden):
        busy.do(ZHUJI, 3.0, type="rollcall", action="next")


# -- polling ---------------------------------------------------------------------------------


def polls(out: Outcome) -> list[dict[str, Any]]:
    return broadcasts(out, "poll")


def test_floor_poll_cycles_and_skips_offline_sites(busy: Harness) -> None:
    busy.c.leave(busy.session[LIEDE], 0.0)
    out = busy.do(
        CHAIR, 10.0, type="poll", target="floor", sites=[ZHUJI, LIEDE, XIANCUN], interval_s=5
    )
    assert busy.c.floor == ZHUJI
    assert broadcasts(out, "floor") == [{"type": "floor", "site": ZHUJI}]
    [event] = polls(out)
    assert event["target"] == "floor" and event["current"] == ZHUJI
    assert event["sites"] == [ZHUJI, LIEDE, XIANCUN] and event["interval_s"] == 5.0
    assert busy.c.next_deadline() == 15.0
    assert busy.c.tick(14.9).messages == []
    busy.c.tick(15.0)
    assert busy.c.floor == XIANCUN  # liede is offline: skipped
    assert busy.c.next_deadline() == 20.0
    busy.c.tick(20.0)
    assert busy.c.floor == ZHUJI
    busy.join(LIEDE, 21.0)
    busy.c.tick(25.0)
    assert busy.c.floor == LIEDE
    assert busy.c.snapshot()["polls"][0]["current"] == LIEDE


def test_floor_poll_stops_on_empty_sites_and_on_manual_floor(busy: Harness) -> None:
    busy.do(CHAIR, 0.0, type="poll", target="floor", sites=[ZHUJI, XIANCUN], interval_s=5)
    out = busy.do(CHAIR, 1.0, type="poll", target="floor", sites=[], interval_s=5)
    assert polls(out) == [{"type": "poll", "output": "wall", "target": "floor", "sites": []}]
    assert busy.c.next_deadline() is None and busy.c.snapshot()["polls"] == []
    assert busy.c.floor == ZHUJI  # stopping leaves the floor where it is
    busy.do(CHAIR, 2.0, type="poll", target="floor", sites=[ZHUJI, XIANCUN], interval_s=5)
    out = busy.do(CHAIR, 3.0, type="floor", site=LIEDE)
    assert [p["sites"] for p in polls(out)] == [[]]
    assert busy.c.next_deadline() is None
    busy.c.tick(100.0)
    assert busy.c.floor == LIEDE


def test_refused_floor_request_keeps_the_floor_poll(busy: Harness) -> None:
    busy.do(CHAIR, 0.0, type="poll", target="floor", sites=[ZHUJI, XIANCUN], interval_s=5)
    with pytest.raises(NotFound):
        busy.do(CHAIR, 1.0, type="floor", site="nowhere")
    with pytest.raises(BadRequest):
        busy.do(CHAIR, 1.0, type="floor", site=WALL)
    assert [p["target"] for p in busy.c.snapshot()["polls"]] == ["floor"]
    busy.c.tick(5.0)
    assert busy.c.floor == XIANCUN


def test_floor_poll_of_offline_sites_has_no_current(h: Harness) -> None:
    h.join(CHAIR)
    out = h.do(CHAIR, 0.0, type="poll", target="floor", sites=[ZHUJI, XIANCUN], interval_s=5)
    assert h.c.floor is None
    assert polls(out)[-1]["current"] is None
    assert h.c.snapshot()["polls"][0]["current"] is None
    h.join(XIANCUN, 1.0)
    h.c.tick(5.0)
    assert h.c.floor == XIANCUN
    assert h.c.snapshot()["polls"][0]["current"] == XIANCUN


def test_floor_poll_refusals(busy: Harness) -> None:
    for who in (OPERATOR, ZHUJI):
        with pytest.raises(Forbidden):
            busy.do(who, 0.0, type="poll", target="floor", sites=[ZHUJI], interval_s=5)
    with pytest.raises(NotFound):
        busy.do(CHAIR, 0.0, type="poll", target="floor", sites=[ZHUJI, "nowhere"], interval_s=5)
    with pytest.raises(BadRequest):
        busy.do(CHAIR, 0.0, type="poll", target="floor", sites=[ZHUJI, WALL], interval_s=5)
    with pytest.raises(NotFound):
        busy.do(
            CHAIR, 0.0, type="poll", target="floor", sites=[ZHUJI], interval_s=5, output="wall9"
        )
    assert busy.c.snapshot()["polls"] == [] and busy.c.floor is None


def test_tile_poll_cycles_a_tile_source(busy: Harness) -> None:
    busy.do(OPERATOR, 0.0, type="layout", layout={"kind": "4", "tiles": [{"source": CHAIR}]})
    out = busy.do(OPERATOR, 1.0, type="poll", target=2, sites=[ZHUJI, CAMERA], interval_s=3)
    [layout] = broadcasts(out, "layout")
    assert [t["source"] for t in layout["layout"]["tiles"]] == [CHAIR, None, ZHUJI, None]
    assert polls(out)[0]["current"] == ZHUJI and polls(out)[0]["target"] == 2
    assert busy.c.next_deadline() == 4.0
    out = busy.c.tick(4.0)
    [layout] = broadcasts(out, "layout")
    assert layout["layout"]["tiles"][2]["source"] == CAMERA
    assert busy.c.layouts["wall"].tiles[2] == Tile(CAMERA)
    busy.c.tick(7.0)
    assert busy.c.layouts["wall"].tiles[2] == Tile(ZHUJI)
    assert busy.c.floor is None  # tile polls leave the floor alone
    out = busy.do(OPERATOR, 8.0, type="poll", target=2, sites=[], interval_s=3)
    assert polls(out) == [{"type": "poll", "output": "wall", "target": 2, "sites": []}]
    assert busy.c.next_deadline() is None


def test_tile_poll_keeps_a_custom_tile_rect(busy: Harness) -> None:
    layout = {"kind": "custom", "tiles": [{"rect": [0, 0, 0.5, 0.5]}, {"rect": [0.5, 0, 0.5, 0.5]}]}
    busy.do(OPERATOR, 0.0, type="layout", layout=layout)
    busy.do(OPERATOR, 1.0, type="poll", target=1, sites=[ZHUJI], interval_s=3)
    assert busy.c.layouts["wall"].tiles[1] == Tile(ZHUJI, (0.5, 0.0, 0.5, 0.5))


def test_tile_poll_refusals(busy: Harness) -> None:
    for target in (1, -1, 99):
        with pytest.raises(NotFound):
            busy.do(OPERATOR, 0.0, type="poll", target=target, sites=[ZHUJI], interval_s=3)
    with pytest.raises(Forbidden):
        busy.do(ZHUJI, 0.0, type="poll", target=0, sites=[ZHUJI], interval_s=3)
    with pytest.raises(BadRequest):
        busy.do(OPERATOR, 0.0, type="poll", target=0, sites=[WALL], interval_s=3)
    with pytest.raises(NotFound):
        busy.do(OPERATOR, 0.0, type="poll", target=0, sites=["nowhere"], interval_s=3)
    assert busy.c.snapshot()["polls"] == []


def test_new_layout_stops_tile_polls_but_not_the_floor_poll(busy: Harness) -> None:
    busy.do(OPERATOR, 0.0, type="layout", layout={"kind": "4"})
    busy.do(OPERATOR, 0.0, type="poll", target=0, sites=[ZHUJI, XIANCUN], interval_s=3)
    busy.do(OPERATOR, 0.0, type="poll", target=1, sites=[LIEDE, CAMERA], interval_s=4)
    busy.do(CHAIR, 0.0, type="poll", target="floor", sites=[ZHUJI, XIANCUN], interval_s=10)
    assert busy.c.next_deadline() == 3.0
    out = busy.do(OPERATOR, 1.0, type="layout", layout={"kind": "9"})
    assert sorted(str(p["target"]) for p in polls(out)) == ["0", "1"]
    assert all(p["sites"] == [] for p in polls(out))
    assert [p["target"] for p in busy.c.snapshot()["polls"]] == ["floor"]
    assert busy.c.next_deadline() == 10.0
    assert busy.c.layouts["wall"].tiles == (Tile(),) * 9


def test_poll_upcoming_source_is_in_the_plan(busy: Harness) -> None:
    busy.do(CHAIR, 0.0, type="poll", target="floor", sites=[ZHUJI, XIANCUN, LIEDE], interval_s=5)
    assert busy.c.plan.upcoming == frozenset({XIANCUN})


# -- layout, presets, banner, recording ------------------------------------------------------


@pytest.mark.parametrize("who", [OPERATOR, CHAIR])
def test_operator_and_chair_set_the_layout(busy: Harness, who: SiteId) -> None:
    wire = {"kind": "1+5", "tiles": [{"source": CHAIR}, {"source": ZHUJI}, {"source": CAMERA}]}
    out = busy.do(who, 1.0, type="layout", layout=wire)
    [event] = broadcasts(out, "layout")
    assert event["layout"]["kind"] == "1+5" and len(event["layout"]["tiles"]) == 6
    assert busy.c.layouts["wall"].tiles[:3] == (Tile(CHAIR), Tile(ZHUJI), Tile(CAMERA))
    assert busy.c.snapshot()["layout"] == event["layout"]


def test_layout_refusals(busy: Harness) -> None:
    before = busy.c.snapshot()
    for who in (ZHUJI, WALL, UPLINK):
        with pytest.raises(Forbidden):
            busy.do(who, 1.0, type="layout", layout={"kind": "4"})
    with pytest.raises(NotFound):
        busy.do(OPERATOR, 1.0, type="layout", layout={"kind": "4", "tiles": [{"source": "x"}]})
    with pytest.raises(NotFound):
        busy.do(OPERATOR, 1.0, type="layout", layout={"kind": "4", "output": "wall9"})
    with pytest.raises(BadRequest):
        busy.do(OPERATOR, 1.0, type="layout", layout={"kind": "4", "tiles": [{"source": WALL}]})
    overlapping = [{"rect": [0, 0, 0.6, 0.6]}, {"rect": [0.5, 0.5, 0.5, 0.5]}]
    with pytest.raises(BadRequest):
        busy.do(OPERATOR, 1.0, type="layout", layout={"kind": "custom", "tiles": overlapping})
    assert busy.c.snapshot() == before


def test_custom_layout_tiles_may_touch(busy: Harness) -> None:
    touching = [
        {"rect": [0, 0, 0.5, 1]},
        {"rect": [0.5, 0, 0.5, 0.5]},
        {"rect": [0.5, 0.5, 0.5, 0.5]},
    ]
    busy.do(OPERATOR, 1.0, type="layout", layout={"kind": "custom", "tiles": touching})
    assert len(busy.c.layouts["wall"].tiles) == 3


def test_presets_save_load_delete(busy: Harness) -> None:
    four = {"kind": "4", "tiles": [{"source": ZHUJI}, {"source": XIANCUN}]}
    busy.do(OPERATOR, 1.0, type="layout", layout=four)
    saved = busy.c.layouts["wall"]
    out = busy.do(OPERATOR, 2.0, type="preset_save", name="四分屏")
    assert out.facts == [PresetSaved("四分屏", saved)]
    assert broadcasts(out, "presets") == [{"type": "presets", "names": ["四分屏"]}]
    busy.do(CHAIR, 3.0, type="layout", layout={"kind": "1"})
    out = busy.do(CHAIR, 4.0, type="preset_load", name="四分屏")
    assert busy.c.layouts["wall"] == saved
    assert broadcasts(out, "layout")[0]["layout"]["kind"] == "4"
    assert busy.c.snapshot()["presets"] == ["四分屏"]
    out = busy.do(OPERATOR, 5.0, type="preset_delete", name="四分屏")
    assert out.facts == [PresetDeleted("四分屏")]
    assert broadcasts(out, "presets") == [{"type": "presets", "names": []}]
    for kind in ("preset_load", "preset_delete"):
        with pytest.raises(NotFound):
            busy.do(OPERATOR, 6.0, type=kind, name="四分屏")
    for kind in ("preset_save", "preset_load", "preset_delete"):
        with pytest.raises(Forbidden):
            busy.do(ZHUJI, 7.0, type=kind, name="x")


def test_presets_from_configuration_are_loadable(h: Harness) -> None:
    preset = Layout("wall", "2", (Tile(ZHUJI), Tile(CAMERA)))
    c = Conference(SITES, ConferenceConfig("c"), presets={"默认": preset})
    c.join(OPERATOR, SessionId("op"), 0.0)
    c.handle(SessionId("op"), m.PresetLoad("默认"), 1.0)
    assert c.layouts["wall"] == preset
    stale = Conference(
        SITES, ConferenceConfig("c"), presets={"旧": Layout("wall", "1", (Tile(SiteId("gone")),))}
    )
    stale.join(OPERATOR, SessionId("op"), 0.0)
    with pytest.raises(NotFound):
        stale.handle(SessionId("op"), m.PresetLoad("旧"), 1.0)


def test_banner(busy: Harness) -> None:
    out = busy.do(OPERATOR, 1.0, type="banner", text="天河区三防工作视频会商")
    assert broadcasts(out, "banner") == [{"type": "banner", "text": "天河区三防工作视频会商"}]
    assert busy.c.snapshot()["banner"] == "天河区三防工作视频会商"
    busy.do(CHAIR, 2.0, type="banner", text="")
    assert busy.c.banner == ""
    with pytest.raises(Forbidden):
        busy.do(ZHUJI, 3.0, type="banner", text="x")


def test_record_is_idempotent(busy: Harness) -> None:
    out = busy.do(CHAIR, 1.0, type="record", on=True)
    assert out.facts == [RecordingChanged(True, 1.0)]
    assert broadcasts(out, "recording") == [{"type": "recording", "on": True}]
    assert busy.c.snapshot()["recording"] is True
    out = busy.do(CHAIR, 2.0, type="record", on=True)
    assert out.facts == [] and out.messages == []
    out = busy.do(CHAIR, 3.0, type="record", on=False)
    assert out.facts == [RecordingChanged(False, 3.0)]
    for who in (OPERATOR, ZHUJI):
        with pytest.raises(Forbidden):
            busy.do(who, 4.0, type="record", on=True)


# -- the routing plan ------------------------------------------------------------------------


@pytest.fixture
def media(busy: Harness) -> Harness:
    busy.media(CHAIR, ZHUJI, XIANCUN, LIEDE, WALL)
    return busy


def main_of(h: Harness, site: SiteId) -> str | None:
    route = h.c.plan.route(h.session[site])
    assert route is not None
    return route.video["main"]


def audio_of(h: Harness, site: SiteId) -> tuple[SiteId, ...]:
    route = h.c.plan.route(h.session[site])
    assert route is not None
    return route.audio


def test_plan_without_a_floor(media: Harness) -> None:
    assert main_of(media, ZHUJI) == CHAIR
    assert main_of(media, CHAIR) is None
    assert main_of(media, WALL) == "wall"
    assert audio_of(media, ZHUJI) == (CHAIR,)
    assert audio_of(media, CHAIR) == ()
    assert audio_of(media, WALL) == ()
    assert media.c.plan.video_needed == {CHAIR, "wall"}
    assert media.c.plan.audio_needed == {CHAIR}
    # sessions without media have no route
    assert media.c.plan.route(media.session[ZHUJI_C1]) is None
    assert media.c.plan.route(media.session[OPERATOR]) is None


def test_plan_with_a_floor(media: Harness) -> None:
    media.do(CHAIR, 1.0, type="floor", site=ZHUJI)
    assert main_of(media, XIANCUN) == ZHUJI
    assert main_of(media, ZHUJI) == CHAIR  # the floor holder sees the chair
    assert main_of(media, CHAIR) == ZHUJI
    assert main_of(media, WALL) == "wall"
    assert audio_of(media, XIANCUN) == (CHAIR, ZHUJI)
    assert audio_of(media, ZHUJI) == (CHAIR,)  # mix-minus
    assert audio_of(media, CHAIR) == (ZHUJI,)
    assert media.c.plan.video_needed == {CHAIR, ZHUJI, "wall"}
    assert media.c.plan.audio_needed == {CHAIR, ZHUJI}


def test_plan_drops_muted_audio_and_adds_wall_sources(media: Harness) -> None:
    media.do(CHAIR, 1.0, type="floor", site=ZHUJI)
    media.do(CHAIR, 2.0, type="mute", site=CHAIR, audio=True)
    assert audio_of(media, XIANCUN) == (ZHUJI,)
    assert audio_of(media, ZHUJI) == ()
    media.do(CHAIR, 3.0, type="mute", site=ZHUJI, audio=True)
    assert audio_of(media, XIANCUN) == ()
    assert media.c.plan.audio_needed == frozenset()
    media.do(
        OPERATOR,
        4.0,
        type="layout",
        layout={"kind": "2", "tiles": [{"source": LIEDE}, {"source": CAMERA}]},
    )
    assert media.c.plan.video_needed == {CHAIR, ZHUJI, LIEDE, CAMERA, "wall"}


def test_slots_messages_on_media_and_on_change_only(busy: Harness) -> None:
    session = busy.session[XIANCUN]
    out = busy.c.set_media(session, ["main"])
    assert sent_to(out, session, "slots") == [
        {"type": "slots", "assign": {"main": {"source": CHAIR, "label": NAMES[CHAIR]}}}
    ]
    busy.media(CHAIR, ZHUJI, WALL)
    out = busy.do(CHAIR, 1.0, type="floor", site=ZHUJI)
    assert sent_to(out, session, "slots") == [
        {"type": "slots", "assign": {"main": {"source": ZHUJI, "label": "珠吉街"}}}
    ]
    assert sent_to(out, busy.session[CHAIR], "slots") == [
        {"type": "slots", "assign": {"main": {"source": ZHUJI, "label": "珠吉街"}}}
    ]
    assert sent_to(out, busy.session[ZHUJI], "slots") == []  # still sees the chair
    assert sent_to(out, busy.session[WALL], "slots") == []
    # no change for anyone: no slots messages at all
    assert of_type(busy.do(OPERATOR, 2.0, type="banner", text="会商"), "slots") == []
    assert of_type(busy.do(ZHUJI, 3.0, type="hand", up=True), "slots") == []
    # sessions without media are never sent slots or pause
    out = busy.do(CHAIR, 4.0, type="floor", site=LIEDE)
    for site in (LIEDE, ZHUJI_C1, OPERATOR, UPLINK):
        assert sent_to(out, busy.session[site], "slots") == []
        assert sent_to(out, busy.session[site], "pause") == []


def test_wall_slot_label(busy: Harness) -> None:
    out = busy.c.set_media(busy.session[WALL], ["main"])
    assert sent_to(out, busy.session[WALL], "slots") == [
        {"type": "slots", "assign": {"main": {"source": "wall", "label": "wall"}}}
    ]
    assert sent_to(out, busy.session[WALL], "pause") == []  # a wall publishes nothing


def test_pause_messages_follow_the_need(busy: Harness) -> None:
    busy.media(CHAIR, ZHUJI)
    session = busy.session[XIANCUN]
    out = busy.c.set_media(session, ["main"])
    assert sent_to(out, session, "pause") == [{"type": "pause", "video": True, "audio": True}]
    out = busy.do(CHAIR, 1.0, type="floor", site=XIANCUN)
    assert sent_to(out, session, "pause") == [{"type": "pause", "video": False, "audio": False}]
    assert of_type(busy.do(OPERATOR, 2.0, type="banner", text="x"), "pause") == []
    out = busy.do(CHAIR, 3.0, type="mute", site=XIANCUN, audio=True)
    assert sent_to(out, session, "pause") == [{"type": "pause", "video": False, "audio": True}]
    out = busy.do(CHAIR, 4.0, type="floor", site=None)  # floor back: video no longer needed
    assert sent_to(out, session, "pause") == [{"type": "pause", "video": True, "audio": True}]
    out = busy.do(
        OPERATOR, 5.0, type="layout", layout={"kind": "1", "tiles": [{"source": XIANCUN}]}
    )
    assert sent_to(out, session, "pause") == [{"type": "pause", "video": False, "audio": True}]


def test_chair_is_paused_when_nobody_receives_it(busy: Harness) -> None:
    out = busy.media(CHAIR)
    assert sent_to(out, busy.session[CHAIR], "pause") == [
        {"type": "pause", "video": True, "audio": True}
    ]
    out = busy.media(ZHUJI)
    assert sent_to(out, busy.session[CHAIR], "pause") == [
        {"type": "pause", "video": False, "audio": False}
    ]


# -- video limits: a site only the wall shows sends what its tile shows ---------------------

#: 1920x1080, a 64 px band, 15 fps once 16 tiles have a source (the bridge's defaults).
GEOMETRY = WallGeometry(band=64, large_layout_fps=15)


@pytest.fixture
def walled() -> Harness:
    h = Harness(wall=GEOMETRY)
    for site in (CHAIR, *TERMINALS, OPERATOR, WALL):
        h.join(site, 0.0)
    h.media(CHAIR, *TERMINALS)
    return h


def layout(h: Harness, now: float, kind: str, *sources: SiteId | None) -> Outcome:
    tiles = [{"source": s} for s in sources]
    return h.do(OPERATOR, now, type="layout", layout={"kind": kind, "tiles": tiles})


def last_pause(out: Outcome, h: Harness, site: SiteId) -> dict[str, Any] | None:
    sent = sent_to(out, h.session[site], "pause")
    return sent[-1] if sent else None


def test_a_site_only_on_the_wall_is_asked_for_its_tile_size(walled: Harness) -> None:
    out = layout(walled, 1.0, "25", XIANCUN)
    # 5x5 tiles of 384x202 below the band: letterboxed, nothing there shows taller than 202
    assert last_pause(out, walled, XIANCUN) == {
        "type": "pause",
        "video": False,
        "audio": True,
        "video_limit": {"height": 202, "fps": 30},
    }
    assert walled.c.plan.video_limits == {XIANCUN: VideoLimit(202, 30)}
    # in the big tile of 1+5 too: the larger need wins (1280x676 and 640x338)
    out = layout(walled, 2.0, "1+5", XIANCUN, None, XIANCUN)
    assert last_pause(out, walled, XIANCUN)["video_limit"] == {"height": 676, "fps": 30}  # type: ignore[index]
    # full screen, below the band: 1016 lines
    out = layout(walled, 3.0, "1", XIANCUN)
    assert last_pause(out, walled, XIANCUN)["video_limit"] == {"height": 1016, "fps": 30}  # type: ignore[index]
    # the same layout again, a banner: nothing changes for it, nothing is sent
    assert last_pause(walled.do(OPERATOR, 4.0, type="banner", text="会商"), walled, XIANCUN) is None


def test_a_big_layout_asks_for_its_frame_rate(walled: Harness) -> None:
    # 16 tiles with a source (a site may fill several): the wall composes at 15 fps
    out = layout(walled, 1.0, "25", XIANCUN, *[ZHUJI] * 15)
    assert last_pause(out, walled, XIANCUN)["video_limit"] == {"height": 202, "fps": 15}  # type: ignore[index]
    out = layout(walled, 2.0, "25", XIANCUN, *[ZHUJI] * 14)  # 15 sources: 30 fps again
    assert last_pause(out, walled, XIANCUN)["video_limit"] == {"height": 202, "fps": 30}  # type: ignore[index]


def test_anything_but_the_wall_lifts_the_limit(walled: Harness) -> None:
    layout(walled, 1.0, "25", XIANCUN, ZHUJI)
    out = walled.do(CHAIR, 2.0, type="floor", site=XIANCUN)  # every main shows it now
    assert last_pause(out, walled, XIANCUN) == {"type": "pause", "video": False, "audio": False}
    assert XIANCUN not in walled.c.plan.video_limits
    assert walled.c.plan.video_limits[ZHUJI] == VideoLimit(202, 30)
    out = walled.do(CHAIR, 3.0, type="floor", site=None)
    assert last_pause(out, walled, XIANCUN)["video_limit"] == {"height": 202, "fps": 30}  # type: ignore[index]
    out = walled.c.want_source("whep-1", XIANCUN, True)  # a WHEP viewer takes the full picture
    assert "video_limit" not in last_pause(out, walled, XIANCUN)  # type: ignore[operator]
    out = walled.c.want_source("whep-1", XIANCUN, False)
    assert last_pause(out, walled, XIANCUN)["video_limit"] == {"height": 202, "fps": 30}  # type: ignore[index]
    walled.media(OPERATOR)  # the operator's preview shows the wall output, not the site
    assert walled.c.plan.video_limits[XIANCUN] == VideoLimit(202, 30)
    out = layout(walled, 4.0, "25")  # off the wall: paused, and a pause carries no limit
    assert last_pause(out, walled, XIANCUN) == {"type": "pause", "video": True, "audio": True}


def test_polled_tiles_limit_every_site_they_go_through(walled: Harness) -> None:
    layout(walled, 1.0, "1+7", None, XIANCUN)
    out = walled.do(OPERATOR, 2.0, type="poll", target=1, sites=[ZHUJI, LIEDE], interval_s=5)
    assert walled.c.plan.video_limits.get(ZHUJI) == VideoLimit(254, 30)  # 1+7's small tiles
    assert walled.c.plan.video_limits.get(LIEDE) == VideoLimit(254, 30)  # decoded ahead
    assert last_pause(out, walled, LIEDE)["video_limit"] == {"height": 254, "fps": 30}  # type: ignore[index]
    # a floor poll's sites are about to take the floor: no limit for them
    walled.do(CHAIR, 3.0, type="poll", target="floor", sites=[LIEDE, XIANCUN], interval_s=5)
    assert LIEDE not in walled.c.plan.video_limits
    assert walled.c.plan.video_limits.get(ZHUJI) == VideoLimit(254, 30)


def test_no_wall_geometry_means_no_limits(busy: Harness) -> None:
    busy.media(XIANCUN)
    out = busy.do(
        OPERATOR, 1.0, type="layout", layout={"kind": "25", "tiles": [{"source": XIANCUN}]}
    )
    assert last_pause(out, busy, XIANCUN) == {"type": "pause", "video": False, "audio": True}
    assert busy.c.plan.video_limits == {}


def test_video_limit_checks_itself() -> None:
    with pytest.raises(ValueError):
        VideoLimit(0, 30)
    with pytest.raises(ValueError):
        VideoLimit(216, 0)
    assert VideoLimit(216, 15).merge(VideoLimit(180, 30)) == VideoLimit(216, 30)
    assert VideoLimit(216, 15).merge(None) == VideoLimit(216, 15)


def test_programme_taps_and_recording_unpause_the_programme(busy: Harness) -> None:
    out = busy.media(CHAIR)  # nobody receives the chair yet: paused
    assert sent_to(out, busy.session[CHAIR], "pause")[-1]["video"] is True
    out = busy.c.want_programme("uplink", True)
    assert sent_to(out, busy.session[CHAIR], "pause") == [
        {"type": "pause", "video": False, "audio": False}
    ]
    assert busy.c.plan.programme_wanted
    out = busy.c.want_programme("uplink", False)
    assert sent_to(out, busy.session[CHAIR], "pause") == [
        {"type": "pause", "video": True, "audio": True}
    ]
    out = busy.do(CHAIR, 1.0, type="record", on=True)  # the recorder takes the programme too
    assert sent_to(out, busy.session[CHAIR], "pause") == [
        {"type": "pause", "video": False, "audio": False}
    ]
    out = busy.do(CHAIR, 2.0, type="record", on=False)
    assert sent_to(out, busy.session[CHAIR], "pause")[-1]["video"] is True


def test_detached_session_gets_nothing_and_resumes_after_set_media(busy: Harness) -> None:
    busy.media(CHAIR, ZHUJI)
    busy.c.detach(busy.session[ZHUJI], 1.0)
    out = busy.do(CHAIR, 2.0, type="floor", site=XIANCUN)
    assert sent_to(out, busy.session[ZHUJI], "slots") == []
    busy.join(ZHUJI, 3.0)
    out = busy.c.set_media(busy.session[ZHUJI], ["main", "extra1"])
    assert sent_to(out, busy.session[ZHUJI], "slots") == [
        {
            "type": "slots",
            "assign": {
                "main": {"source": XIANCUN, "label": "冼村街"},
                "extra1": {"source": None, "label": ""},
            },
        }
    ]


def test_snapshot_is_json(busy: Harness) -> None:
    busy.do(CHAIR, 1.0, type="rollcall", action="start")
    busy.do(CHAIR, 1.0, type="poll", target="floor", sites=[ZHUJI, XIANCUN], interval_s=5)
    busy.do(
        OPERATOR, 1.0, type="layout", layout={"kind": "custom", "tiles": [{"rect": [0, 0, 1, 1]}]}
    )
    busy.c.set_link(ZHUJI, 10.0, 0.0, 800.0)
    text = m.serialize(busy.c.snapshot())
    back = json.loads(text)
    assert back["rollcall"]["current"] == ZHUJI
    assert back["layout"]["tiles"] == [{"source": None, "rect": [0.0, 0.0, 1.0, 1.0]}]
    assert "珠吉街" in text


# -- random sequences: invariants after every step -------------------------------------------

SITE_IDS = [s.id for s in SITES]
maybe_site = st.sampled_from([*SITE_IDS, "nowhere"])
tile_rects = st.sampled_from(
    [[0, 0, 1, 1], [0, 0, 0.5, 0.5], [0.5, 0, 0.5, 0.5], [0, 0.5, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5]]
)


def _without_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


control_requests = st.one_of(
    st.builds(lambda s: {"type": "floor", "site": s}, st.none() | maybe_site),
    st.builds(
        lambda s, a, v: _without_none(type="mute", site=s, audio=a, video=v),
        maybe_site,
        st.none() | st.booleans(),
        st.none() | st.booleans(),
    ),
    st.builds(lambda a: {"type": "mute_all", "audio": a}, st.booleans()),
    st.builds(
        lambda up, s: _without_none(type="hand", up=up, site=s),
        st.booleans(),
        st.none() | maybe_site,
    ),
    st.builds(
        lambda a, s: _without_none(type="rollcall", action=a, sites=s),
        st.sampled_from(["start", "next", "stop"]),
        st.none() | st.lists(maybe_site, max_size=4),
    ),
    st.just({"type": "rollcall_ack"}),
    st.builds(
        lambda t, s, i, o: {"type": "poll", "target": t, "sites": s, "interval_s": i, "output": o},
        st.just("floor") | st.integers(-1, 9),
        st.lists(maybe_site, max_size=4),
        st.sampled_from([3, 5, 12.5]),
        st.sampled_from(["wall", "wall", "wall9"]),
    ),
    st.builds(
        lambda k, srcs: {
            "type": "layout",
            "layout": {"kind": k, "tiles": [{"source": s} for s in srcs]},
        },
        st.sampled_from(["1", "2", "4", "1+5", "9"]),
        st.lists(st.none() | maybe_site, max_size=2),
    ),
    st.builds(
        lambda tiles: {"type": "layout", "layout": {"kind": "custom", "tiles": tiles}},
        st.lists(
            st.fixed_dictionaries({"source": st.none() | maybe_site, "rect": tile_rects}),
            min_size=1,
            max_size=3,
        ),
    ),
    st.builds(
        lambda k, n: {"type": k, "name": n},
        st.sampled_from(["preset_save", "preset_load", "preset_delete"]),
        st.sampled_from(["甲", "乙"]),
    ),
    st.builds(lambda t: {"type": "banner", "text": t}, st.sampled_from(["", "防汛会商"])),
    st.builds(lambda on: {"type": "record", "on": on}, st.booleans()),
    st.just({"type": "ping"}),
)
steps = st.floats(min_value=0.0, max_value=20.0)


class ConferenceMachine(RuleBasedStateMachine):
    """Random joins, leaves, detaches, ticks, media and requests from random sessions."""

    def __init__(self) -> None:
        super().__init__()
        config = ConferenceConfig("fuzz", rejoin_grace_s=GRACE, rollcall_timeout_s=ROLLCALL_TIMEOUT)
        self.c = Conference(SITES, config)
        self.now = 1.0
        self.issued: list[tuple[SessionId, SiteId]] = []

    def _check(self, out: Outcome) -> None:
        live = {s for s, _ in self.issued if self.c.is_live(s)}
        for to, msg in out.messages:
            m.serialize(msg).encode("utf-8")
            assert to is None or set(to) <= live, (to, msg)
        for session, code, _ in out.closes:
            assert code == CLOSE_REPLACED and not self.c.is_live(session)

    def _pick(self, data: st.DataObject) -> SessionId:
        """Mostly a live session; sometimes an ended, replaced or never-issued one."""
        live = [s for s, _ in self.issued if self.c.is_live(s)]
        if live and data.draw(st.integers(0, 9)) < 8:
            return data.draw(st.sampled_from(live))
        return data.draw(st.sampled_from([SessionId("ghost"), *(s for s, _ in self.issued)]))

    @initialize(sites=st.lists(st.sampled_from(SITE_IDS), unique=True))
    def start(self, sites: list[SiteId]) -> None:
        for site in [CHAIR, *sites]:
            self.join(site, 0.0)

    @rule(site=st.sampled_from(SITE_IDS), dt=steps)
    def join(self, site: SiteId, dt: float) -> None:
        self.now += dt
        session = SessionId(f"s{len(self.issued)}")
        self.issued.append((session, site))
        self._check(self.c.join(site, session, self.now))

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), dt=steps)
    def leave(self, data: st.DataObject, dt: float) -> None:
        self.now += dt
        self._check(self.c.leave(self._pick(data), self.now))

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), dt=steps)
    def detach(self, data: st.DataObject, dt: float) -> None:
        self.now += dt
        self._check(self.c.detach(self._pick(data), self.now))

    @rule(dt=st.floats(min_value=0.0, max_value=40.0))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._check(self.c.tick(self.now))

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), slots=st.sampled_from([["main"], ["main", "extra1"], []]))
    def set_media(self, data: st.DataObject, slots: list[str]) -> None:
        session = self._pick(data)
        if self.c.is_live(session):
            self._check(self.c.set_media(session, slots))
        else:
            with pytest.raises(Conflict):
                self.c.set_media(session, slots)

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), fields=control_requests, dt=steps)
    def request(self, data: st.DataObject, fields: dict[str, Any], dt: float) -> None:
        self._request(self._pick(data), fields, dt)

    @rule(fields=control_requests, dt=steps)
    def chair_request(self, fields: dict[str, Any], dt: float) -> None:
        self._request(self._live_of(CHAIR), fields, dt)

    @rule(
        who=st.sampled_from([CHAIR, OPERATOR]),
        aim=st.sampled_from(["floor", 0, 1]),
        sites=st.lists(st.sampled_from([*TERMINALS, UPLINK, CAMERA]), min_size=1, max_size=4),
        dt=steps,
    )
    def start_poll(self, who: SiteId, aim: str | int, sites: list[SiteId], dt: float) -> None:
        fields = {"type": "poll", "target": aim, "sites": sites, "interval_s": 5}
        self._request(self._live_of(who), fields, dt)

    def _live_of(self, site: SiteId) -> SessionId:
        live = [s for s, owner in self.issued if owner == site and self.c.is_live(s)]
        return live[0] if live else SessionId("ghost")

    @rule(who=st.sampled_from([*TERMINALS, UPLINK]), up=st.booleans(), dt=steps)
    def raise_or_lower_hand(self, who: SiteId, up: bool, dt: float) -> None:
        self._request(self._live_of(who), {"type": "hand", "up": up}, dt)

    @rule(site=st.none() | maybe_site, dt=steps)
    def chair_floor(self, site: str | None, dt: float) -> None:
        self._request(self._live_of(CHAIR), {"type": "floor", "site": site}, dt)

    @rule(action=st.sampled_from(["start", "start", "next", "stop"]), dt=steps)
    def chair_rollcall(self, action: str, dt: float) -> None:
        self._request(self._live_of(CHAIR), {"type": "rollcall", "action": action}, dt)

    @rule(dt=steps)
    def called_site_acks(self, dt: float) -> None:
        call = self.c.rollcall
        called = call.current if call is not None else None
        session = self._live_of(called) if called is not None else SessionId("ghost")
        self._request(session, {"type": "rollcall_ack"}, dt)

    def _request(self, session: SessionId, fields: dict[str, Any], dt: float) -> None:
        self.now += dt
        before = json.dumps(self.c.snapshot(), sort_keys=True)
        try:
            request = m.parse(json.dumps(fields))
            out = self.c.handle(session, request, self.now)
        except SignallingError:
            after = json.dumps(self.c.snapshot(), sort_keys=True)
            assert after == before, "a refusal changed the state"
            return
        self._check(out)

    @invariant()
    def one_live_session_per_site(self) -> None:
        live: dict[SiteId, list[SessionId]] = {}
        for session, site in self.issued:
            if self.c.is_live(session):
                live.setdefault(site, []).append(session)
        assert all(len(v) == 1 for v in live.values()), live
        for site in SITE_IDS:
            assert self.c.site_state(site)["online"] == (site in live)

    @invariant()
    def floor_holder_is_online_or_none(self) -> None:
        floor = self.c.floor
        if floor is not None:
            assert self.c.site_state(floor)["online"] or self.c.sites[floor].level is Level.CAMERA
            assert floor != CHAIR

    @invariant()
    def hands_queue_matches_raised_hands(self) -> None:
        snap = self.c.snapshot()
        up = [s["id"] for s in snap["sites"] if s["hand"]]
        assert sorted(snap["hands"]) == sorted(up)
        assert len(set(snap["hands"])) == len(snap["hands"])
        assert all(self.c.site_state(s)["online"] for s in up)

    @invariant()
    def rollcall_lists_are_disjoint(self) -> None:
        call = self.c.rollcall
        if call is None:
            return
        lists = [call.acked, call.missed, call.pending, [call.current] if call.current else []]
        seen = [s for part in lists for s in part]
        assert len(seen) == len(set(seen)), lists
        assert call.active == (call.current is not None)

    @invariant()
    def snapshot_is_json_and_plan_is_consistent(self) -> None:
        snap = self.c.snapshot()
        json.dumps(snap, allow_nan=False, ensure_ascii=False).encode("utf-8")
        for session in self.c.plan.routes:
            assert self.c.is_live(session)
        if snap["polls"] or (snap["rollcall"] and snap["rollcall"]["active"]):
            assert self.c.next_deadline() is not None


ConferenceMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_random_sequences_keep_the_invariants = ConferenceMachine.TestCase


def test_previews_follow_a_rejoin_of_the_same_site(busy: Harness) -> None:
    busy.c.set_media(busy.session[CHAIR], ["main", "extra1"])
    busy.do(CHAIR, 1.0, type="preview", slot="extra1", source=ZHUJI)
    route = busy.c.plan.route(busy.session[CHAIR])
    assert route is not None and route.video["extra1"] == ZHUJI
    busy.c.detach(busy.session[CHAIR], 2.0)
    busy.join(CHAIR, 3.0)  # within the grace period: the new session resumes
    busy.c.set_media(busy.session[CHAIR], ["main", "extra1"])
    route = busy.c.plan.route(busy.session[CHAIR])
    assert route is not None and route.video["extra1"] == ZHUJI
    with pytest.raises(NotFound):  # a slot the session never negotiated
        busy.do(CHAIR, 4.0, type="preview", slot="extra2", source=ZHUJI)
    with pytest.raises(Forbidden):
        busy.do(ZHUJI, 4.0, type="preview", slot="extra1", source=LIEDE)


def test_a_server_side_viewer_unpauses_the_site_it_watches(busy: Harness) -> None:
    session = busy.session[XIANCUN]
    out = busy.c.set_media(session, ["main"])
    assert sent_to(out, session, "pause") == [{"type": "pause", "video": True, "audio": True}]
    out = busy.c.want_source("whep-1", XIANCUN, True)
    assert sent_to(out, session, "pause") == [{"type": "pause", "video": False, "audio": False}]
    busy.c.want_source("whep-2", XIANCUN, True)
    assert sent_to(busy.c.want_source("whep-1", XIANCUN, False), session, "pause") == []
    out = busy.c.want_source("whep-2", XIANCUN, False)
    assert sent_to(out, session, "pause") == [{"type": "pause", "video": True, "audio": True}]
    with pytest.raises(NotFound):
        busy.c.want_source("whep-3", SiteId("nowhere"), True)


def test_a_camera_site_carries_its_ingest_state(h: Harness) -> None:
    assert h.state(CAMERA)["camera"] is None and "camera" not in h.state(CHAIR)
    out = h.c.set_camera(CAMERA, "live")
    assert site_events(out, CAMERA)[0]["camera"] == "live"
    assert h.state(CAMERA)["online"] is False  # a camera is not a participant
    assert h.c.set_camera(CAMERA, "live").messages == []  # no change: no event
    with pytest.raises(NotFound):
        h.c.set_camera(CHAIR, "live")
