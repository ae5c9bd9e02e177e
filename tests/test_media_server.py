"""Media through the real server: aiortc terminals offer over signalling, the relay routes the
conference's plan (floor → every terminal's ``main`` slot), muted audio is not forwarded."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import pytest
from aiortc import RTCSessionDescription

from bridge.slot import Slot
from bridge.testkit import LoopbackClient, MarkedVideoTrack, RecordingPort, record_slot, wait_for
from signalling.client import Client, ClientError
from signalling.model import SiteId
from web.app import Huishang

CHAIR, ZHUJI, XIANCUN, LIEDE = "tianhe", "tianhe.zhuji", "tianhe.xiancun", "tianhe.liede"
TAGS = {CHAIR: 1, ZHUJI: 2, XIANCUN: 3, LIEDE: 4}


@dataclass
class Terminal:
    site: str
    signalling: Client
    media: LoopbackClient
    track: MarkedVideoTrack

    def main_tags(self, since: int = 0) -> list[int]:
        mid = self.media.mid_of("main", "video")
        received = self.media.video.get(mid)
        return received.tags()[since:] if received else []

    def main_count(self) -> int:
        return len(self.main_tags())

    def audio_frames(self) -> int:
        return self.media.audio_frames.get(self.media.mid_of("main", "audio"), 0)


async def terminal(app: Huishang, site: str, extras: int = 0) -> Terminal:
    token = app.token_for(site)  # type: ignore[arg-type]
    assert token is not None
    client = await Client.connect(app.signalling_url, token)
    media = LoopbackClient()
    track = MarkedVideoTrack(TAGS[site])
    media.send(track, audio=True)
    if extras:
        media.receive(audio=False, videos=extras)
    await media.pc.setLocalDescription(await media.pc.createOffer())
    reply = await client.request({"type": "offer", "sdp": media.pc.localDescription.sdp})
    expected = {"main"} | {f"extra{i}" for i in range(1, extras + 1)}
    assert reply["type"] == "answer" and set(reply["slots"].values()) == expected
    await media.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    from bridge.peer import Answer

    media.answer = Answer(reply["sdp"], reply["slots"])
    await wait_for(lambda: media.pc.connectionState == "connected", 20, f"{site} connected")
    return Terminal(site, client, media, track)


async def close(*terminals: Terminal) -> None:
    for t in terminals:
        await t.media.close()
        await t.signalling.close()


async def test_the_floor_reaches_every_main_slot(server: Huishang) -> None:
    chair, zhuji, xiancun, liede = [
        await terminal(server, s) for s in (CHAIR, ZHUJI, XIANCUN, LIEDE)
    ]
    try:
        # Nobody holds the floor: terminals see the chair.
        for t in (zhuji, xiancun, liede):
            await wait_for(
                lambda t=t: TAGS[CHAIR] in t.main_tags()[-5:], 15, f"{t.site} sees chair"
            )
        slots = await xiancun.signalling.next_event("slots", where=lambda e: "main" in e["assign"])
        assert slots["assign"]["main"]["label"] == "天河区应急指挥中心"
        # The chair gives the floor to 珠吉街: every other terminal switches, 珠吉街 sees the
        # chair, the chair sees 珠吉街. No decode errors: every frame read back is a clean mark.
        marks = {t.site: t.main_count() for t in (xiancun, liede, chair)}
        await chair.signalling.request({"type": "floor", "site": ZHUJI})
        for t in (xiancun, liede, chair):
            await wait_for(
                lambda t=t: TAGS[ZHUJI] in t.main_tags(marks[t.site]), 15, f"{t.site} sees floor"
            )
        await asyncio.sleep(0.5)
        assert xiancun.main_tags()[-10:] == [TAGS[ZHUJI]] * 10
        assert set(zhuji.main_tags()[-10:]) == {TAGS[CHAIR]}
        event = await xiancun.signalling.next_event(
            "slots", where=lambda e: e["assign"].get("main", {}).get("source") == ZHUJI
        )
        assert event["assign"]["main"]["label"] == "珠吉街"
        # Frame indices after the switch are consecutive runs (no freeze, no garbage).
        mid = xiancun.media.mid_of("main", "video")
        values = [v & 0xFFF for v, _ in xiancun.media.video[mid].frames if v >> 12 == TAGS[ZHUJI]]
        gaps = [b - a for a, b in itertools.pairwise(values)]
        assert values and max(gaps) <= 3, gaps[:20]
    finally:
        await close(chair, zhuji, xiancun, liede)


async def test_muted_audio_is_not_forwarded(server: Huishang) -> None:
    chair, xiancun = [await terminal(server, s) for s in (CHAIR, XIANCUN)]
    try:
        await wait_for(lambda: xiancun.audio_frames() > 20, 15, "programme audio")
        await chair.signalling.request({"type": "mute", "site": CHAIR, "audio": True})
        await asyncio.sleep(0.5)
        before = xiancun.audio_frames()
        await asyncio.sleep(1.0)
        assert xiancun.audio_frames() - before <= 2  # nothing forwarded while muted
        publication = server.media.publication(CHAIR, "audio")  # type: ignore[union-attr]
        assert publication is not None and publication.muted
        await chair.signalling.request({"type": "mute", "site": CHAIR, "audio": False})
        await wait_for(lambda: xiancun.audio_frames() > before + 20, 15, "audio resumes")
    finally:
        await close(chair, xiancun)


@pytest.mark.parametrize(
    ("sdp", "needle"),
    [("this is not sdp", "offer"), ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "offer")],
)
async def test_bogus_offers_are_bad_requests(server: Huishang, sdp: str, needle: str) -> None:
    token = server.token_for(ZHUJI)  # type: ignore[arg-type]
    assert token is not None
    client = await Client.connect(server.signalling_url, token)
    with pytest.raises(ClientError) as info:
        await client.request({"type": "offer", "sdp": sdp})
    assert info.value.code == "bad_request" and needle in info.value.message
    assert (await client.request({"type": "ping"}))["type"] == "ok"  # still usable
    await client.close()


async def test_the_chair_previews_sites_in_its_extra_slots(server: Huishang) -> None:
    chair = await terminal(server, CHAIR, extras=2)
    zhuji, liede = [await terminal(server, s) for s in (ZHUJI, LIEDE)]
    try:
        await chair.signalling.request({"type": "preview", "slot": "extra1", "source": ZHUJI})
        await chair.signalling.request({"type": "preview", "slot": "extra2", "source": LIEDE})
        extra1, extra2 = (chair.media.mid_of(f"extra{i}", "video") for i in (1, 2))

        def tags(mid: str) -> list[int]:
            received = chair.media.video.get(mid)
            return received.tags()[-5:] if received else []

        await wait_for(lambda: tags(extra1) == [TAGS[ZHUJI]] * 5, 15, "extra1 shows 珠吉街")
        await wait_for(lambda: tags(extra2) == [TAGS[LIEDE]] * 5, 15, "extra2 shows 猎德街")
        with pytest.raises(ClientError) as info:
            await zhuji.signalling.request({"type": "preview", "slot": "extra1", "source": LIEDE})
        assert info.value.code == "forbidden"
        with pytest.raises(ClientError) as info:
            await chair.signalling.request({"type": "preview", "slot": "extra9", "source": LIEDE})
        assert info.value.code == "not_found"
    finally:
        await close(chair, zhuji, liede)


def _listener(app: Huishang, kind: str) -> tuple[Slot, RecordingPort]:
    """A server-side programme listener's slot, keeping what the relay sends."""
    assert app.media is not None
    slot = app.media.relay.create_slot(f"listener/{kind}", kind)
    return slot, record_slot(slot)


async def test_a_server_side_listener_carries_the_programme_with_mix_minus(
    server: Huishang,
) -> None:
    assert server.media is not None
    chair, zhuji = [await terminal(server, s) for s in (CHAIR, ZHUJI)]
    video, video_port = _listener(server, "video")
    audio, audio_port = _listener(server, "audio")
    try:
        server.signalling.deliver(server.conference.want_programme("test", True))
        server.media.carry_programme("test", video=video, audio=audio)
        chair_video = server.media.publication(CHAIR, "video")
        await wait_for(lambda: video.source is chair_video, 10, "programme = the chair")
        await wait_for(lambda: len(video_port.sent) > 20, 15, "chair video forwarded")
        await wait_for(lambda: len(audio_port.sent) > 20, 15, "chair audio forwarded")
        # 珠吉街 takes the floor: the video follows; the audio is the mix of chair + floor
        await chair.signalling.request({"type": "floor", "site": ZHUJI})
        zhuji_video = server.media.publication(ZHUJI, "video")
        await wait_for(lambda: video.source is zhuji_video, 10, "programme = the floor")
        mixer = server.media.mixer
        assert mixer is not None
        await wait_for(
            lambda: audio.source is mixer.publication,
            10,
            "programme audio = the mix",
        )
        # minus the floor holder: that listener hears only the chair, sees the chair
        server.media.carry_programme("test", video=video, audio=audio, minus=SiteId(ZHUJI))
        await wait_for(lambda: video.source is chair_video, 10, "minus: the chair")
        assert audio.source is server.media.publication(CHAIR, "audio")
        server.media.drop_programme("test")
        await wait_for(lambda: video.source is None, 10, "dropped")
    finally:
        server.signalling.deliver(server.conference.want_programme("test", False))
        await close(chair, zhuji)
