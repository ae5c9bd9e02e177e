"""The relay end to end: real aiortc peers on loopback, forwarding through bridge.relay."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from aiortc import RTCRtpSender

from bridge.errors import OfferError, UnsupportedCodecError
from bridge.ice import IceConfig, apply_ice_config
from bridge.peer import Peer
from bridge.publication import Publication
from bridge.relay import Relay
from bridge.slot import Slot
from bridge.testkit import Bridge, LoopbackClient, ReceivedVideo, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(autouse=True)
def loopback_ice() -> Iterator[None]:
    undo = apply_ice_config(IceConfig(host_addresses=("127.0.0.1",)))
    yield
    undo()


@pytest.fixture
def decode_errors(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.WARNING, logger="aiortc.rtcrtpreceiver")

    def errors() -> list[str]:
        return [r.getMessage() for r in caplog.records if "failed to decode" in r.getMessage()]

    return errors


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    b = Bridge()
    yield b
    await b.close()


def video_of(client: LoopbackClient, name: str = "main") -> ReceivedVideo:
    return client.video.setdefault(client.mid_of(name, "video"), ReceivedVideo())


def slot_of(peer: Peer, name: str = "main", kind: str = "video") -> Slot:
    slot = peer.slot(name, kind)
    assert slot is not None
    return slot


def pub_of(peer: Peer, kind: str = "video") -> Publication:
    publication = peer.publication(kind)
    assert publication is not None
    return publication


def assert_marks_from(received: ReceivedVideo, tag: int, start: int = 0) -> None:
    """Frames are the source's own frames, in order (frame index increases)."""
    values = received.values()[start:]
    assert values, "no frames"
    assert all(v >> 12 == tag for v in values), values
    indexes = [v & 0xFFF for v in values]
    assert indexes == sorted(indexes), indexes


async def video_packets_lost(client: LoopbackClient, mid: str) -> tuple[int, int]:
    """(packets received, packets lost) of the primary video stream on ``mid`` (getStats)."""
    transceiver = next(t for t in client.pc.getTransceivers() if t.mid == mid)
    stats = await transceiver.receiver.getStats()
    inbound = [s for s in stats.values() if s.type == "inbound-rtp"]
    primary = max(inbound, key=lambda s: s.packetsReceived)
    return primary.packetsReceived, primary.packetsLost


async def test_one_publisher_three_subscribers_receive_the_source_frames(
    bridge: Bridge, decode_errors: Callable[[], list[str]]
) -> None:
    _, pub_peer, _ = await bridge.publisher(tag=5)
    subs = [await bridge.subscriber() for _ in range(3)]
    for _, peer in subs:
        bridge.relay.route(slot_of(peer), pub_of(pub_peer))
        bridge.relay.route(slot_of(peer, kind="audio"), pub_of(pub_peer, "audio"))
    for client, _ in subs:
        await wait_for(lambda c=client: len(video_of(c).frames) >= 30, what="30 frames")
    for client, _ in subs:
        assert_marks_from(video_of(client), tag=5)
        received, lost = await video_packets_lost(client, client.mid_of("main", "video"))
        assert received > 0 and lost == 0
        await wait_for(lambda c=client: c.audio_frames.get(c.mid_of("main", "audio"), 0) > 10)
    assert decode_errors() == []
    # the relay never decoded: the publisher's remote track queued nothing
    receiver_track = next(
        t.receiver.track for t in pub_peer.pc.getTransceivers() if t.kind == "video"
    )
    assert receiver_track._queue.qsize() == 0


async def test_switching_a_slot_between_publishers_is_clean(
    bridge: Bridge, decode_errors: Callable[[], list[str]]
) -> None:
    _, peer_a, _ = await bridge.publisher(tag=1)
    _, peer_b, _ = await bridge.publisher(tag=2)
    client, peer = await bridge.subscriber()
    slot = slot_of(peer)
    received = video_of(client)
    bridge.relay.route(slot, pub_of(peer_a))
    await wait_for(lambda: len(received.frames) >= 20, what="frames of A")
    for target, tag in ((peer_b, 2), (peer_a, 1), (peer_b, 2)):
        start = len(received.frames)
        bridge.relay.route(slot, pub_of(target))
        await wait_for(
            lambda s=start, t=tag: sum(1 for v in received.tags()[s:] if v == t) >= 15,
            what=f"frames of {tag}",
        )
        tags = received.tags()[start:]
        # one clean cut: old source's frames, then only the new source's, in order
        cut = tags.index(tag)
        assert all(t == tag for t in tags[cut:]), tags
        assert_marks_from(received, tag, start + cut)
    assert slot.switches == 4
    received_packets, lost = await video_packets_lost(client, client.mid_of("main", "video"))
    assert received_packets > 0 and lost == 0  # gap-free sequence numbers across switches
    assert decode_errors() == []


async def test_muted_audio_is_not_forwarded(bridge: Bridge) -> None:
    _, pub_peer, _ = await bridge.publisher(tag=3)
    client, peer = await bridge.subscriber()
    audio_slot = slot_of(peer, kind="audio")
    mic = pub_of(pub_peer, "audio")
    bridge.relay.route(audio_slot, mic)
    mid = client.mid_of("main", "audio")
    transceiver = next(t for t in client.pc.getTransceivers() if t.mid == mid)

    async def received() -> int:
        stats = await transceiver.receiver.getStats()
        return sum(s.packetsReceived for s in stats.values() if s.type == "inbound-rtp")

    await wait_for(lambda: audio_slot.packets_forwarded > 20, what="audio forwarded")
    mic.muted = True
    await asyncio.sleep(0.2)  # packets already in flight
    forwarded, before = audio_slot.packets_forwarded, await received()
    arrived = mic.packets_received
    await asyncio.sleep(0.6)
    assert mic.packets_received > arrived + 10  # the publisher kept sending...
    assert audio_slot.packets_forwarded == forwarded  # ...and the relay forwarded nothing
    assert await received() == before
    mic.muted = False
    await wait_for(lambda: audio_slot.packets_forwarded > forwarded + 10, what="unmuted audio")
    await asyncio.sleep(0.3)
    stats = await transceiver.receiver.getStats()
    inbound = [s for s in stats.values() if s.type == "inbound-rtp"]
    assert inbound and all(s.packetsLost == 0 for s in inbound)  # resumed without a gap


def drop_incoming(
    client: LoopbackClient, mid: str, should_drop: Callable[[int, int], bool]
) -> list[int]:
    """Drop RTP arriving at ``client`` for ``mid``'s primary SSRC when should_drop(ssrc, seq).

    Simulates loss on the relay → subscriber leg at the client's DTLS transport.
    """
    transceiver = next(t for t in client.pc.getTransceivers() if t.mid == mid)
    transport = transceiver.receiver.transport
    original = transport._handle_rtp_data
    dropped: list[int] = []

    async def handle(data: bytes, arrival_time_ms: int) -> None:
        ssrc = int.from_bytes(data[8:12], "big")
        seq = int.from_bytes(data[2:4], "big")
        if should_drop(ssrc, seq):
            dropped.append(seq)
            return
        await original(data, arrival_time_ms)

    transport._handle_rtp_data = handle
    return dropped


async def test_loss_on_one_leg_is_recovered_by_nack(
    bridge: Bridge, decode_errors: Callable[[], list[str]]
) -> None:
    _, pub_peer, _ = await bridge.publisher(tag=4)
    lossy, lossy_peer = await bridge.subscriber()
    _, clean_peer = await bridge.subscriber()
    lossy_slot = slot_of(lossy_peer)
    rewriter = lossy_slot.rewriter
    assert rewriter is not None
    first_seen: set[int] = set()

    def every_ninth_once(ssrc: int, seq: int) -> bool:
        # aiortc's jitter buffer drops a retransmission older than the first packet it saw,
        # so loss starts once the stream runs
        if len(video_of(lossy).frames) < 5:
            return False
        if ssrc != rewriter.ssrc or seq % 9 or seq in first_seen:
            return False
        first_seen.add(seq)
        return True

    dropped = drop_incoming(lossy, lossy.mid_of("main", "video"), every_ninth_once)
    for peer in (lossy_peer, clean_peer):
        bridge.relay.route(slot_of(peer), pub_of(pub_peer))
    await wait_for(lambda: len(video_of(lossy).frames) >= 50, what="frames through loss")
    assert len(dropped) >= 5
    port = lossy_slot._port
    assert port is not None and port.retransmitted >= len(dropped) - 2  # type: ignore[attr-defined]
    assert_marks_from(video_of(lossy), tag=4)
    indexes = [v & 0xFFF for v in video_of(lossy).values()]
    assert len(indexes) >= indexes[-1] - indexes[0] - 2  # (almost) no frame missing
    assert decode_errors() == []
    clean_port = slot_of(clean_peer)._port
    assert clean_port is not None and clean_port.retransmitted == 0  # type: ignore[attr-defined]


async def test_vanished_publisher_and_deaf_subscriber_do_not_stall_others(
    bridge: Bridge, decode_errors: Callable[[], list[str]]
) -> None:
    _, peer_a, track_a = await bridge.publisher(tag=6)
    _, peer_b, _ = await bridge.publisher(tag=7)
    sub_a, peer_sa = await bridge.subscriber()
    sub_b, peer_sb = await bridge.subscriber()
    deaf, peer_deaf = await bridge.subscriber()
    deaf.read = False
    drop_incoming(deaf, deaf.mid_of("main", "video"), lambda ssrc, seq: True)
    bridge.relay.route(slot_of(peer_sa), pub_of(peer_a))
    bridge.relay.route(slot_of(peer_sb), pub_of(peer_b))
    bridge.relay.route(slot_of(peer_deaf), pub_of(peer_b))
    await wait_for(lambda: len(video_of(sub_a).frames) >= 10, what="frames of A")
    await wait_for(lambda: len(video_of(sub_b).frames) >= 10, what="frames of B")

    track_a.stop()  # publisher A's media vanishes without a goodbye
    await asyncio.sleep(0.3)
    seen_a = len(video_of(sub_a).frames)
    seen_b = len(video_of(sub_b).frames)
    await wait_for(lambda: len(video_of(sub_b).frames) >= seen_b + 30, what="B goes on")
    assert len(video_of(sub_a).frames) == seen_a

    # the slot left on the vanished publisher can be switched away
    bridge.relay.route(slot_of(peer_sa), pub_of(peer_b))
    await wait_for(lambda: 7 in video_of(sub_a).tags(), what="A's subscriber gets B")
    await wait_for(lambda: len(video_of(sub_a).frames) >= seen_a + 20, what="B frames at A's")

    # the deaf subscriber cost nothing but its own bounded state
    deaf_slot = slot_of(peer_deaf)
    assert deaf_slot.buffered == 0
    assert deaf_slot.packets_forwarded > 0
    assert video_of(deaf).frames == []
    assert decode_errors() == []


async def test_extra_slots_and_receive_only_clients(bridge: Bridge) -> None:
    _, pub_peer, _ = await bridge.publisher(tag=8)
    wall, wall_peer = await bridge.subscriber(videos=3)
    assert sorted(wall.answer.slots.values()) == ["extra1", "extra2", "main", "main"]  # type: ignore[union-attr]
    assert wall_peer.publications == {}
    # a sendrecv client gets publications for its microphone and camera and main slots
    assert set(pub_peer.slot_names.values()) == {"main"}
    assert {p.kind for p in pub_peer.publications.values()} == {"audio", "video"}
    bridge.relay.route(slot_of(wall_peer, "extra2"), pub_of(pub_peer))
    await wait_for(lambda: len(video_of(wall, "extra2").frames) >= 10, what="extra2 frames")
    assert_marks_from(video_of(wall, "extra2"), tag=8)
    assert video_of(wall, "main").frames == []


async def test_bogus_sdp_is_refused_with_the_reason(bridge: Bridge) -> None:
    peer = Peer("bogus", bridge.relay)
    bridge.peers.append(peer)
    with pytest.raises(OfferError, match="no audio or video"):
        await peer.answer("this is not SDP")
    client = LoopbackClient()
    bridge.clients.append(client)
    client.receive()
    await client.pc.setLocalDescription(await client.pc.createOffer())
    broken = client.pc.localDescription.sdp.replace("a=ice-ufrag", "a=x-removed")
    with pytest.raises(OfferError) as info:
        await peer.answer(broken)
    assert "ice" in info.value.reason.lower()


async def test_offer_without_supported_codec_names_the_supported_ones(bridge: Bridge) -> None:
    client = LoopbackClient()
    bridge.clients.append(client)
    transceiver = client.pc.addTransceiver("video", direction="recvonly")
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    transceiver.setCodecPreferences(h264)
    await client.pc.setLocalDescription(await client.pc.createOffer())
    peer = Peer("h264", bridge.relay)
    bridge.peers.append(peer)
    with pytest.raises(UnsupportedCodecError) as info:
        await peer.answer(client.pc.localDescription.sdp)
    assert "VP8" in str(info.value) and "Opus" in str(info.value)
    assert info.value.offered == ["H264", "H264"]


async def test_close_is_idempotent_and_cascades(bridge: Bridge) -> None:
    _, pub_peer, _ = await bridge.publisher(tag=9)
    _, sub_peer = await bridge.subscriber()
    slot = slot_of(sub_peer)
    bridge.relay.route(slot, pub_of(pub_peer))
    publication = pub_of(pub_peer)
    await pub_peer.close()
    await pub_peer.close()
    assert publication.closed and publication.id not in bridge.relay.publications
    assert slot.source is None and slot.pending is None  # the slot went blank
    await sub_peer.close("left")
    assert slot.closed and slot.id not in bridge.relay.slots
    assert sub_peer.close_reason == "left"
    assert pub_peer.pc.connectionState == "closed"
    with pytest.raises(OfferError):
        await sub_peer.answer("v=0")


def test_route_checks_ownership_and_kind() -> None:
    relay = Relay()
    video = relay.create_publication("cam", "video")
    audio = relay.create_publication("mic", "audio")
    slot = relay.create_slot("s", "video")
    with pytest.raises(ValueError, match="kinds differ"):
        relay.route(slot, audio)
    with pytest.raises(ValueError, match="does not belong"):
        relay.route(slot, Publication("stranger", "video"))
    with pytest.raises(ValueError, match="already exists"):
        relay.create_slot("s", "video")
    relay.route(slot, video)
    assert slot.pending is video  # video waits for a keyframe
    relay.route(slot, None)
    assert slot.pending is None and slot.source is None
