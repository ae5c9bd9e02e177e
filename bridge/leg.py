"""One aiortc transceiver joined to the relay: its receiver as a publication, its sender fed
by a slot. Every peer connection the server holds (a participant's :class:`~bridge.peer.Peer`,
the cascade uplink's :class:`~bridge.uplink_peer.UplinkPeer`, a WHIP push) is made of these.

- :func:`publish_receiver`: the receiver's RTP goes into a new
  :class:`~bridge.publication.Publication` through a
  :class:`~bridge.aiortc_adapter.ReceiverTap`, which also carries the publication's PLI and
  REMB back to the remote sender.
- :func:`subscribe_sender`: a new :class:`~bridge.slot.Slot` writes whatever it is routed to
  through a :class:`~bridge.aiortc_adapter.SenderPort`, rewritten by a
  :class:`~bridge.rtp.StreamRewriter` for the payload type and header extensions the remote
  side negotiated (*answered*: the media section that holds them), starting at random
  sequence number, timestamp and picture id (RFC 3550 5.1).
"""

from __future__ import annotations

import random

from aiortc import RTCRtpCodecCapability, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.sdp import MediaDescription

from .aiortc_adapter import ReceiverTap, SenderPort
from .errors import OfferError
from .publication import Publication
from .relay import Relay
from .rtp import StreamRewriter
from .slot import Slot

__all__ = ["SUPPORTED_CODECS", "codec_preferences", "publish_receiver", "subscribe_sender"]

#: The one codec per kind the relay forwards (ARCHITECTURE.md: VP8 and Opus system-wide).
SUPPORTED_CODECS = {"audio": "opus", "video": "VP8"}


def codec_preferences(kind: str, codec: str | None = None) -> list[RTCRtpCodecCapability]:
    """aiortc's capabilities for *codec* (default: the relay's codec of *kind*) and RTX, for
    ``RTCRtpTransceiver.setCodecPreferences``: nothing else gets negotiated."""
    wanted = {f"{kind}/{codec or SUPPORTED_CODECS[kind]}".lower(), f"{kind}/rtx"}
    capabilities = RTCRtpSender.getCapabilities(kind)
    assert capabilities is not None  # aiortc knows both kinds
    return [c for c in capabilities.codecs if c.mimeType.lower() in wanted]


def publish_receiver(
    relay: Relay,
    publication_id: str,
    kind: str,
    receiver: RTCRtpReceiver,
    *,
    decode: bool = False,
) -> tuple[Publication, ReceiverTap]:
    """A publication of *relay* carrying *receiver*'s RTP (installed at once: RTP may follow
    the DTLS handshake immediately). *decode*: aiortc's own decoder runs too."""
    publication = relay.create_publication(publication_id, kind)
    tap = ReceiverTap(
        receiver,
        on_rtp=publication.on_rtp,
        on_sender_report=publication.on_sender_report,
        decode=decode,
    )
    tap.install(kind)
    publication.bind(tap)
    return publication, tap


def subscribe_sender(
    relay: Relay, slot_id: str, transceiver: RTCRtpTransceiver, answered: MediaDescription
) -> tuple[Slot, SenderPort]:
    """A slot of *relay* that sends through *transceiver*'s sender, in the codec and header
    extensions of *answered* (:class:`~bridge.errors.OfferError` if it has no usable codec)."""
    kind = answered.kind
    wanted = SUPPORTED_CODECS[kind].lower()
    codec = next((c for c in answered.rtp.codecs if c.name.lower() == wanted), None)
    if codec is None or codec.payloadType is None:
        raise OfferError(f"no payload type for {SUPPORTED_CODECS[kind]} in the {kind} section")
    slot = relay.create_slot(slot_id, kind)
    config = relay.config
    port = SenderPort(
        transceiver.sender,
        history_size=(
            config.video_history_packets if kind == "video" else config.audio_history_packets
        ),
        on_keyframe_request=slot.request_keyframe,
        on_remb=slot.on_remb,
        sender_report=slot.sender_report,
    )
    rewriter = StreamRewriter(
        ssrc=port.ssrc,
        payload_type=codec.payloadType,
        clock_rate=codec.clockRate,
        vp8=kind == "video",
        extension_ids={ext.uri: ext.id for ext in answered.rtp.headerExtensions},
        mid=transceiver.mid,
        initial_sequence=random.getrandbits(15),
        initial_timestamp=random.getrandbits(32),
        initial_picture_id=random.getrandbits(15),
    )
    slot.connect(port, rewriter)
    return slot, port
