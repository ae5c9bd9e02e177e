"""The relay end to end: real aiortc peers on loopback, forwarding through bridge.relay."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from aiortc import RTCRtpSender, RTCSessionDescription

from bridge.errors import IceCandidateError, OfferError, UnsupportedCodecError
from bridge.ice import IceConfig, apply_ice_config
from bridge.peer import Peer
from bridge.publication import Publication, RelayConfig
from bridge.relay import Relay
from bridge.rtp import (
    EXT_ABS_SEND_TIME,
    EXT_MID,
    RtpPacket,
    parse_rtp,
    parse_vp8_descriptor,
)
from bridge.slot import Slot
from bridge.testkit import (
    Bridge,
    LoopbackClient,
    MarkedVideoTrack,
    ReceivedVideo,
    RecordingPort,
    record_slot,
    wait_for,
)

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
    client: LoopbackClient,
    mid: str,
    should_drop: Callable[[int, int], bool],
    seen: list[bytes] | None = None,
) -> list[int]:
    """Drop RTP arriving at ``client`` for ``mid``'s primary SSRC when should_drop(ssrc, seq).

    Simulates loss on the relay → subscriber leg at the client's DTLS transport.
    """
    transceiver = next(t for t in client.pc.getTransceivers() if t.mid == mid)
    transport = transceiver.receiver.transport
    original = transport._handle_rtp_data
    dropped: list[int] = []

    async def handle(data: bytes, arrival_time_ms: int) -> None:
        if seen is not None:
            seen.append(data)
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
    port = lossy_slot.port
    assert port is not None and port.retransmitted >= len(dropped) - 2  # type: ignore[attr-defined]
    assert_marks_from(video_of(lossy), tag=4)
    indexes = [v & 0xFFF for v in video_of(lossy).values()]
    assert len(indexes) >= indexes[-1] - indexes[0] - 2  # (almost) no frame missing
    assert decode_errors() == []
    clean_port = slot_of(clean_peer).port
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
    # programme audio and video share a MediaStream (lip sync); each extra is its own
    streams = {}
    for section in wall.answer.sdp.split("m=")[1:]:  # type: ignore[union-attr]
        mid = section.split("a=mid:")[1].split()[0]
        streams[wall.answer.slots[mid] + section[:5]] = section.split("a=msid:")[1].split()[0]  # type: ignore[union-attr]
    assert streams["mainaudio"] == streams["mainvideo"]
    assert len({streams["mainvideo"], streams["extra1video"], streams["extra2video"]}) == 3
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
    # a refused offer leaves the peer as it was: the next good offer is answered
    answer = await peer.answer(client.pc.localDescription.sdp)
    assert sorted(answer.slots.values()) == ["main", "main"]
    assert len(peer.pc.getTransceivers()) == 2


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


class RecordingUpstream:
    """Stands in for the publisher side of aiortc: counts PLIs and REMBs sent upstream."""

    def __init__(self) -> None:
        self.plis = 0
        self.rembs: list[int] = []

    def request_keyframe(self) -> None:
        self.plis += 1

    def send_remb(self, bitrate: int) -> None:
        self.rembs.append(bitrate)


def vp8(
    seq: int, ts: int, *, key: bool = False, start: bool = True, marker: bool = True
) -> RtpPacket:
    picture_id = (ts // 3000) & 0x7F  # packets of one picture share its id
    descriptor = bytes([0x90 if start else 0x80, 0x80, picture_id])
    return RtpPacket(96, seq, ts, 1, descriptor + bytes([0 if key else 1]) + b"data", marker)


def connected_slot(config: RelayConfig) -> tuple[Slot, RecordingPort]:
    slot = Slot("s", "video", config=config)
    return slot, record_slot(slot, initial_sequence=500)


async def test_switch_waits_for_the_keyframe_and_the_old_frame_boundary() -> None:
    config = RelayConfig(switch_stall_s=10.0)
    a, b = Publication("a", "video", config=config), Publication("b", "video", config=config)
    up_a, up_b = RecordingUpstream(), RecordingUpstream()
    a.bind(up_a)
    b.bind(up_b)
    slot, port = connected_slot(config)
    slot.switch(a)
    assert up_a.plis == 1  # asked at once
    await a.on_rtp(vp8(10, 0), 0.0)  # not a keyframe: nothing yet
    assert port.sent == []
    await a.on_rtp(vp8(11, 3000, key=True), 0.03)
    await a.on_rtp(vp8(12, 6000, marker=False), 0.06)  # A's frame in progress
    assert slot.source is a and len(port.sent) == 2

    slot.switch(b)
    assert up_b.plis == 1 and slot.pending is b
    await b.on_rtp(vp8(900, 50, marker=False), 0.07)  # B delta: ignored
    await b.on_rtp(vp8(901, 90000, key=True, marker=False), 0.08)  # B keyframe starts
    await b.on_rtp(vp8(902, 90000, start=False), 0.08)
    assert slot.source is a and slot.buffered == 2  # held until A ends its frame
    await a.on_rtp(vp8(13, 6000, start=False), 0.09)  # A's frame ends (marker)
    assert slot.source is b and slot.buffered == 0
    await a.on_rtp(vp8(14, 9000, key=True), 0.1)  # A no longer reaches the slot
    await b.on_rtp(vp8(903, 93000), 0.11)
    out = [parse_rtp(d, {}) for d in port.sent]
    assert [p.sequence_number for p in out] == list(range(500, 500 + len(out)))
    assert [p.payload[-5] for p in out] == [0, 1, 1, 0, 1, 1]  # A key, A, A end, B key, ...
    assert all(p.ssrc == port.ssrc and p.payload_type == 100 for p in out)
    stamps = [p.timestamp for p in out]
    assert stamps == sorted(stamps)
    descs = [parse_vp8_descriptor(p.payload) for p in out]
    pids = [d.picture_id or 0 for d in descs]
    assert pids == sorted(pids) and len(set(pids)) == 4  # one id per picture, continuous
    assert pids[3] == pids[2] + 1 and all(d.picture_id_bits == 15 for d in descs)


async def test_switch_goes_ahead_when_the_old_source_stalls_mid_frame() -> None:
    config = RelayConfig(switch_stall_s=0.1)
    a, b = Publication("a", "video", config=config), Publication("b", "video", config=config)
    slot, port = connected_slot(config)
    slot.switch(a)
    await a.on_rtp(vp8(1, 0, key=True, marker=False), 0.0)  # A vanishes mid-frame
    slot.switch(b)
    await b.on_rtp(vp8(50, 0, key=True), 0.05)
    assert slot.source is a  # still waiting for A's frame to end
    await b.on_rtp(vp8(51, 3000, key=True), 0.2)
    assert slot.source is b and len(port.sent) == 3


async def test_pli_requests_are_coalesced_but_never_dropped() -> None:
    config = RelayConfig(pli_interval_s=0.05)
    publication = Publication("cam", "video", config=config)
    upstream = RecordingUpstream()
    publication.bind(upstream)
    for _ in range(5):
        publication.request_keyframe()
    assert upstream.plis == 1  # one now...
    await asyncio.sleep(0.1)
    assert upstream.plis == 2  # ...and one deferred PLI for the four coalesced requests
    await asyncio.sleep(0.1)
    publication.request_keyframe()
    publication.request_keyframe()
    assert upstream.plis == 3
    await publication.on_rtp(vp8(7, 0, key=True), 0.0)  # a keyframe answers the waiting one
    await asyncio.sleep(0.1)
    assert upstream.plis == 3


def test_audio_publications_never_send_pli_and_muting_resyncs() -> None:
    publication = Publication("mic", "audio")
    upstream = RecordingUpstream()
    publication.bind(upstream)
    publication.request_keyframe()
    assert upstream.plis == 0
    slot = Slot("a", "audio")
    slot.switch(publication)
    assert slot.source is publication  # audio switches at once


async def test_renegotiation_adds_a_slot_and_keeps_forwarding(bridge: Bridge) -> None:
    _, pub_peer, _ = await bridge.publisher(tag=10)
    client, peer = await bridge.subscriber()
    main = slot_of(peer)
    bridge.relay.route(main, pub_of(pub_peer))
    await wait_for(lambda: len(video_of(client).frames) >= 5, what="main frames")
    client.pc.addTransceiver("video", direction="recvonly")
    await client.pc.setLocalDescription(await client.pc.createOffer())
    answer = await peer.answer(client.pc.localDescription.sdp)
    await client.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    client.answer = answer
    assert sorted(answer.slots.values()) == ["extra1", "main", "main"]
    assert slot_of(peer) is main  # the existing slot survived the new offer
    bridge.relay.route(slot_of(peer, "extra1"), pub_of(pub_peer))
    seen = len(video_of(client).frames)
    await wait_for(lambda: len(video_of(client, "extra1").frames) >= 5, what="extra1 frames")
    await wait_for(lambda: len(video_of(client).frames) >= seen + 5, what="main goes on")


async def test_trickled_candidates_are_taken_or_refused(bridge: Bridge) -> None:
    peer = Peer("trickle", bridge.relay)
    bridge.peers.append(peer)
    with pytest.raises(IceCandidateError, match="before any offer"):
        await peer.add_ice_candidate("candidate:1 1 udp 2130706431 127.0.0.1 9 typ host")
    _, peer = await bridge.subscriber()
    await peer.add_ice_candidate("candidate:1 1 udp 2130706431 127.0.0.1 9 typ host")
    await peer.add_ice_candidate(None)
    with pytest.raises(IceCandidateError, match="bad ICE candidate"):
        await peer.add_ice_candidate("candidate:nonsense")


async def test_a_publisher_restarting_its_stream_resyncs_the_slot() -> None:
    publication = Publication("cam", "video")
    publication.bind(RecordingUpstream())
    slot, port = connected_slot(publication.config)
    slot.switch(publication)
    await publication.on_rtp(vp8(100, 0, key=True), 0.0)
    await publication.on_rtp(vp8(101, 3000), 0.03)
    restarted = vp8(40000, 777_000, key=False)
    restarted.ssrc = 2
    await publication.on_rtp(restarted, 0.06)  # new SSRC, mid-GOP: not forwarded
    assert len(port.sent) == 2 and slot.pending is publication
    key = vp8(40001, 780_000, key=True)
    key.ssrc = 2
    await publication.on_rtp(key, 0.09)
    out = [parse_rtp(d, {}) for d in port.sent]
    assert [p.sequence_number for p in out] == [500, 501, 502]
    assert out[2].timestamp > out[1].timestamp


def renumber(sdp: str, payload_types: dict[int, int], extension_ids: dict[int, int]) -> str:
    """Rewrite an offer's video payload types and every extmap id, as another stack would."""
    out = []
    kind = ""
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            kind = line[2:7]
        if kind == "video" and line.startswith(("m=video", "a=rtpmap:", "a=rtcp-fb:", "a=fmtp:")):
            for old, new in payload_types.items():
                line = re.sub(rf"(?<![\d.]){old}(?![\d.])", f"#{new}", line)
            line = line.replace("#", "")
        if line.startswith("a=extmap:"):
            ext_id, rest = line[len("a=extmap:") :].split(" ", 1)
            line = f"a=extmap:{extension_ids.get(int(ext_id), int(ext_id))} {rest}"
        out.append(line)
    return "\r\n".join(out)


async def connect_munged(
    bridge: Bridge, client: LoopbackClient, payload_types: dict[int, int], ext: dict[int, int]
) -> Peer:
    peer = Peer(f"m{len(bridge.peers)}", bridge.relay)
    bridge.peers.append(peer)
    bridge.clients.append(client)
    await client.pc.setLocalDescription(await client.pc.createOffer())
    offer = renumber(client.pc.localDescription.sdp, payload_types, ext)
    answer = await peer.answer(offer)
    client.answer = answer
    await client.pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    await wait_for(lambda: client.pc.connectionState == "connected", what="connected")
    return peer


async def test_payload_types_and_extension_ids_are_mapped_per_peer(
    bridge: Bridge, decode_errors: Callable[[], list[str]]
) -> None:
    publisher = LoopbackClient()
    publisher.send(MarkedVideoTrack(tag=11))
    pub_peer = await connect_munged(bridge, publisher, {97: 120, 98: 121}, {3: 7})
    subscriber = LoopbackClient()
    subscriber.receive()
    sub_peer = await connect_munged(bridge, subscriber, {97: 100, 98: 101}, {1: 4, 3: 9})
    assert "a=rtpmap:120 VP8/90000" in pub_peer.pc.remoteDescription.sdp
    assert "a=rtpmap:100 VP8/90000" in sub_peer.pc.localDescription.sdp
    mid = subscriber.mid_of("main", "video")
    seen: list[bytes] = []
    drop_incoming(subscriber, mid, lambda ssrc, seq: False, seen)
    bridge.relay.route(slot_of(sub_peer), pub_of(pub_peer))
    await wait_for(lambda: len(video_of(subscriber).frames) >= 10, what="frames")
    assert_marks_from(video_of(subscriber), tag=11)
    assert decode_errors() == []
    rewriter = slot_of(sub_peer).rewriter
    assert rewriter is not None
    media = [parse_rtp(d, {4: EXT_MID, 9: EXT_ABS_SEND_TIME}) for d in seen]
    ours = [p for p in media if p.ssrc == rewriter.ssrc]
    assert ours and all(p.payload_type == 100 for p in ours)
    assert all(p.extensions.get(EXT_MID) == mid.encode() for p in ours)
    assert all(EXT_ABS_SEND_TIME in p.extensions for p in ours)


async def test_follow_routes_once_and_tolerates_closed_and_foreign_parts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay, other = Relay(), Relay()
    slot = relay.create_slot("s", "video")
    first = relay.create_publication("p1", "video")
    relay.follow(slot, first)
    assert slot.pending is first  # waits for first's keyframe
    requested = first.plis_sent
    relay.follow(slot, first)  # already waiting for it: nothing new (no second switch)
    assert slot.pending is first and first.plis_sent == requested
    first.close()
    relay.follow(slot, first)  # a closed publication counts as none
    assert slot.source is None and slot.pending is None
    foreign = other.create_publication("p2", "video")
    with caplog.at_level(logging.ERROR, logger="bridge.relay"):
        relay.follow(slot, foreign)  # logged, not raised: the plan goes on
    assert "cannot route" in caplog.text and slot.pending is None
    slot.close()
    second = relay.create_publication("p3", "video")
    relay.follow(slot, second)  # a closed slot is left alone
    assert slot.pending is None and slot.source is None
    relay.close()
    other.close()
