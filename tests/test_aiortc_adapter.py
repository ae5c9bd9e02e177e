"""bridge.aiortc_adapter: the pinned internals, and the RTCP paths through real aiortc peers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiortc
import pytest
from aiortc import RTCRtpReceiver
from aiortc.rtp import RtcpSrPacket

from bridge import aiortc_adapter
from bridge.aiortc_adapter import PRIVATE_METHODS, check_aiortc_internals
from bridge.errors import AiortcInternalsError
from bridge.ice import IceConfig, apply_ice_config
from bridge.peer import Peer
from bridge.publication import RelayConfig
from bridge.slot import Slot
from bridge.testkit import Bridge, LoopbackClient, MarkedVideoTrack, read_mark, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    undo = apply_ice_config(IceConfig(host_addresses=("127.0.0.1",)))
    yield
    undo()


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    b = Bridge()
    yield b
    await b.close()


def test_internals_of_the_pinned_aiortc_are_present() -> None:
    assert aiortc.__version__ == aiortc_adapter.PINNED_AIORTC_VERSION
    check_aiortc_internals()


def test_internals_check_fails_loudly_on_a_changed_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # what 1.13's signature looked like to us: a PLI without a media SSRC
    monkeypatch.setitem(PRIVATE_METHODS, (RTCRtpReceiver, "_send_rtcp_pli"), ("self",))
    with pytest.raises(AiortcInternalsError, match="_send_rtcp_pli"):
        check_aiortc_internals()


def test_internals_check_fails_loudly_on_another_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(AiortcInternalsError, match=r"1\.17\.0 is installed"):
        check_aiortc_internals()


def test_internals_check_fails_loudly_on_a_missing_method(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(RTCRtpReceiver, "_send_rtcp_nack")
    with pytest.raises(AiortcInternalsError, match="_send_rtcp_nack is missing"):
        check_aiortc_internals()


def test_internals_check_covers_aioice_of_the_direct_send_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aioice
    from aioice.ice import StunProtocol

    monkeypatch.setattr(aioice, "__version__", "0.14.0")
    with pytest.raises(AiortcInternalsError, match=r"aioice 0\.14\.0 is installed"):
        check_aiortc_internals()
    monkeypatch.undo()

    async def send_data(self: StunProtocol, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendmsg(data, addr)  # type: ignore[attr-defined]

    monkeypatch.setattr(StunProtocol, "send_data", send_data)
    with pytest.raises(AiortcInternalsError, match="send_data no longer does"):
        check_aiortc_internals()


def test_history_covers_a_second_at_2_mbit() -> None:
    config = RelayConfig()
    assert config.video_history_packets * 1200 * 8 >= 2_000_000  # aiortc keeps 128


def main_video(peer: Peer) -> Slot:
    slot = peer.slot("main", "video")
    assert slot is not None
    return slot


async def test_sender_reports_are_translated_from_the_publisher(bridge: Bridge) -> None:
    _, pub_peer, _ = await bridge.publisher(tag=1)
    client, sub_peer = await bridge.subscriber()
    slot = main_video(sub_peer)
    publication = pub_peer.publication("video")
    assert publication is not None
    bridge.relay.route(slot, publication)

    mid = client.mid_of("main", "video")
    receiver = next(t.receiver for t in client.pc.getTransceivers() if t.mid == mid)
    original = receiver._handle_rtcp_packet
    reports: list[tuple[int, int]] = []

    async def capture(packet: object) -> None:
        if isinstance(packet, RtcpSrPacket):
            reports.append((packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp))
        await original(packet)

    receiver._handle_rtcp_packet = capture
    matched: list[tuple[int, int]] = []

    def translated_report_seen() -> bool:
        source = publication.last_sender_report
        rewriter = slot.rewriter
        if source is None or rewriter is None:
            return False
        for ntp, rtp in reports:
            if ntp == source.ntp_timestamp:
                matched.append((rtp, rewriter.translate_timestamp(source.rtp_timestamp)))
                return True
        return False

    await wait_for(translated_report_seen, timeout=20, what="a translated sender report")
    rtp, expected = matched[0]
    assert rtp == expected
    # the report counts what the slot sent, not what the publisher sent
    port = slot.port
    assert port is not None and port.packets_sent > 0  # type: ignore[attr-defined]


async def test_subscriber_pli_reaches_the_publisher_and_remb_is_aggregated(
    bridge: Bridge,
) -> None:
    _, pub_peer, _ = await bridge.publisher(tag=2)
    subs = [await bridge.subscriber() for _ in range(2)]
    publication = pub_peer.publication("video")
    assert publication is not None
    for _, peer in subs:
        bridge.relay.route(main_video(peer), publication)
    for client, _ in subs:
        await wait_for(
            lambda c=client: (
                len(c.video[c.mid_of("main", "video")].frames) > 0 if c.video else False
            )
        )
    await asyncio.sleep(publication.config.pli_interval_s * 2)
    plis, keyframes = publication.plis_sent, publication.keyframes_seen

    client, peer = subs[0]
    mid = client.mid_of("main", "video")
    receiver = next(t.receiver for t in client.pc.getTransceivers() if t.mid == mid)
    rewriter = main_video(peer).rewriter
    assert rewriter is not None
    await receiver._send_rtcp_pli(rewriter.ssrc)  # as a browser does on picture loss
    await wait_for(lambda: publication.plis_sent > plis, what="PLI upstream")
    await wait_for(lambda: publication.keyframes_seen > keyframes, what="a fresh keyframe")

    # aiortc subscribers send REMB (abs-send-time is negotiated); the publisher gets the minimum
    await wait_for(lambda: publication.remb is not None, timeout=20, what="REMB upstream")
    estimates = [main_video(p).remb for _, p in subs]
    assert publication.remb is not None
    assert publication.remb <= max(e for e in estimates if e is not None)


async def test_decoding_tap_yields_frames_and_still_forwards(bridge: Bridge) -> None:
    client = LoopbackClient()
    client.send(MarkedVideoTrack(tag=3))
    peer = Peer("decoding", bridge.relay)
    bridge.peers.append(peer)
    bridge.clients.append(client)
    await client.pc.setLocalDescription(await client.pc.createOffer())
    answer = await peer.answer(client.pc.localDescription.sdp, decode=frozenset({"video"}))
    await client.pc.setRemoteDescription(aiortc.RTCSessionDescription(answer.sdp, "answer"))
    sub, sub_peer = await bridge.subscriber()
    publication = peer.publication("video")
    assert publication is not None
    bridge.relay.route(main_video(sub_peer), publication)
    track = next(t.receiver.track for t in peer.pc.getTransceivers() if t.kind == "video")
    frame = await asyncio.wait_for(track.recv(), 20)
    assert read_mark(frame) >> 12 == 3  # type: ignore[arg-type]
    await wait_for(
        lambda: bool(sub.video) and len(sub.video[sub.mid_of("main", "video")].frames) >= 5
    )


def test_internals_check_fails_loudly_on_changed_behaviour(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        aiortc_adapter.BEHAVIOURS,
        (aiortc.RTCRtpSender, "_run_rtcp"),
        "await self._send_rtcp_compound(packets)",
    )
    with pytest.raises(AiortcInternalsError, match="_run_rtcp no longer does"):
        check_aiortc_internals()


async def test_decoding_can_be_switched_on_and_off_while_forwarding(bridge: Bridge) -> None:
    _, pub_peer, _ = await bridge.publisher(tag=4)
    sub, sub_peer = await bridge.subscriber()
    publication = pub_peer.publication("video")
    assert publication is not None
    bridge.relay.route(main_video(sub_peer), publication)
    mid = sub.mid_of("main", "video")
    await wait_for(lambda: bool(sub.video) and len(sub.video[mid].frames) >= 5)
    track = pub_peer.set_decode("video", True)  # the wall puts this feed on a tile
    assert track is not None
    frame = await asyncio.wait_for(track.recv(), 20)
    assert read_mark(frame) >> 12 == 4  # type: ignore[arg-type]
    assert pub_peer.set_decode("video", False) is track
    await asyncio.sleep(0.3)
    while not track._queue.empty():  # drain what was decoded before
        track._queue.get_nowait()
    seen = len(sub.video[mid].frames)
    await wait_for(lambda: len(sub.video[mid].frames) >= seen + 10, what="forwarding goes on")
    assert track._queue.qsize() <= 1  # nothing more decoded
    assert pub_peer.set_decode("audio", True) is not None
    assert sub_peer.set_decode("video", True) is None  # a receive-only peer publishes nothing
