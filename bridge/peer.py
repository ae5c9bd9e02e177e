"""One participant's ``RTCPeerConnection``: the client offers, the bridge answers.

The offer's transceivers define the participant's publications and slots (PROTOCOL.md,
"Media"), in offer order:

- audio sendrecv: the microphone (a publication) and programme audio ``main`` (a slot);
- video sendrecv: the camera (a publication) and programme video ``main`` (a slot);
- further recvonly video transceivers: slots ``extra1``, ``extra2``, ...;
- a receive-only client (wall, observer) offers recvonly only: its first audio and video
  transceivers are ``main``, further video ones ``extra1``, ....

Only VP8 (with RTX, RFC 4588) and Opus are negotiated: the relay forwards, it never
transcodes (RFC 8829 JSEP for the offer/answer rules).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
    sdp,
)

from .aiortc_adapter import ReceiverTap, SlotTrack, set_stream_id
from .decoder import DecoderConfig, VideoDecoder
from .errors import IceCandidateError, OfferError, UnsupportedCodecError
from .leg import SUPPORTED_CODECS, codec_preferences, publish_receiver, subscribe_sender
from .publication import Publication
from .relay import Relay
from .slot import Slot

__all__ = ["SUPPORTED_CODECS", "Answer", "Peer", "PeerConfig"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Per-connection settings: ICE servers (``stun:``/``turn:`` URLs; none on loopback)."""

    ice_servers: tuple[str, ...] = ()
    ice_username: str | None = None
    ice_credential: str | None = None
    decoder: DecoderConfig = field(default_factory=DecoderConfig)


@dataclass(frozen=True, slots=True)
class Answer:
    """The SDP answer and the slot each media id carries (``{mid: slot name}``)."""

    sdp: str
    slots: dict[str, str] = field(default_factory=dict)


def _direction(media: sdp.MediaDescription) -> str:
    return media.direction or "sendrecv"


def _check_offer(description: sdp.SessionDescription) -> None:
    media = [m for m in description.media if m.kind in ("audio", "video")]
    if not media:
        raise OfferError("the offer has no audio or video media section")
    bundle = next((g for g in description.group if g.semantic == "BUNDLE"), None)
    mids = {m.rtp.muxId for m in media}
    if bundle is None or not mids <= set(bundle.items):
        raise OfferError("the offer must BUNDLE all its media sections (RFC 8843)")
    for m in media:
        wanted = SUPPORTED_CODECS[m.kind].lower()
        names = [c.name for c in m.rtp.codecs]
        if wanted not in (n.lower() for n in names) and _direction(m) != "inactive":
            raise UnsupportedCodecError(m.kind, m.rtp.muxId, names)


async def _validate_with_aiortc(offer_sdp: str) -> None:
    """Apply the offer to a throwaway connection first, so that a refused offer leaves no
    half-made transceivers behind on the real one."""
    probe = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await probe.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
    except Exception as exc:
        raise OfferError(str(exc) or type(exc).__name__) from exc
    finally:
        await probe.close()


class Peer:
    """One participant's connection; its publications and slots live in ``relay``.

    Publication and slot ids are ``"<peer_id>/<mid>"``. ``close()`` is idempotent and
    cascades to the slots, publications, taps and the ``RTCPeerConnection``.
    """

    def __init__(self, peer_id: str, relay: Relay, *, config: PeerConfig | None = None) -> None:
        self.id = peer_id
        self.relay = relay
        self.config = config or PeerConfig()
        servers = [
            RTCIceServer(
                urls=url,
                username=self.config.ice_username,
                credential=self.config.ice_credential,
            )
            for url in self.config.ice_servers
        ]
        # max-bundle: transceivers created before the offer is applied must share the first
        # transport, or aiortc leaves them on a transport it discards (RFC 8843 BUNDLE)
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self._slots: dict[str, Slot] = {}  # mid → slot
        self._slot_names: dict[str, str] = {}  # mid → slot name
        self._publications: dict[str, Publication] = {}  # mid → publication
        self._taps: dict[str, ReceiverTap] = {}  # mid → tap of a publication
        self._decoders: dict[str, VideoDecoder] = {}  # mid → decoder of a video publication
        self._answering = asyncio.Lock()
        self._known_mids: set[str] = set()
        self._extra = 0
        self._closing: asyncio.Future[None] | None = None
        self.close_reason: str | None = None
        self._close_task: asyncio.Future[None] | None = None

        @self.pc.on("connectionstatechange")
        def _on_state() -> None:
            if self.pc.connectionState == "connected":
                for slot in self._slots.values():
                    slot.port_ready()
            state = self.pc.connectionState
            if state in ("failed", "closed") and self._closing is None:
                reason = "ice failed" if state == "failed" else "closed by the remote peer"
                self._close_task = asyncio.ensure_future(self.close(reason))

    def __repr__(self) -> str:
        return f"Peer({self.id!r})"

    # -- what the offer defined ----------------------------------------------------------

    @property
    def slots(self) -> dict[str, Slot]:
        """mid → slot."""
        return dict(self._slots)

    @property
    def slot_names(self) -> dict[str, str]:
        """mid → slot name (``main``, ``extra1``, ...)."""
        return dict(self._slot_names)

    def slot(self, name: str, kind: str) -> Slot | None:
        """The slot named ``name`` of ``kind`` (``slot("main", "video")``)."""
        for mid, slot_name in self._slot_names.items():
            slot = self._slots.get(mid)
            if slot_name == name and slot is not None and slot.kind == kind:
                return slot
        return None

    @property
    def publications(self) -> dict[str, Publication]:
        """mid → publication (what the participant sends)."""
        return dict(self._publications)

    def publication(self, kind: str) -> Publication | None:
        """The participant's first publication of ``kind`` (microphone or camera)."""
        for publication in self._publications.values():
            if publication.kind == kind:
                return publication
        return None

    # -- offer / answer ------------------------------------------------------------------

    def set_decode(self, kind: str, decode: bool) -> MediaStreamTrack | None:
        """Decode the participant's ``kind`` publication too (a wall feed), or stop.

        Returns the track that yields decoded frames (None when there is no such
        publication); it stays the same track across stops and starts until the peer closes.
        Video is decoded from the relay's RTP by a :class:`~bridge.decoder.VideoDecoder`
        (from the next keyframe, asked for at once); audio through aiortc's own receiver
        (the tap lets its decoder run), as the audio mix expects.
        """
        for mid, publication in self._publications.items():
            if publication.kind != kind:
                continue
            if kind == "video":
                return self._set_video_decode(mid, publication, decode)
            tap = self._taps[mid]
            tap.set_decode(decode)
            if decode:
                publication.request_keyframe()
            transceiver = self._transceiver(mid)
            return transceiver.receiver.track if transceiver is not None else None
        return None

    def _set_video_decode(
        self, mid: str, publication: Publication, decode: bool
    ) -> MediaStreamTrack | None:
        decoder = self._decoders.get(mid)
        if decoder is None:
            if not decode or self._closing is not None:
                return None
            decoder = VideoDecoder(
                f"{self.id}/{mid}",
                config=self.config.decoder,
                relay_config=self.relay.config,
                pool=self.relay.decode_pool,
            )
            self._decoders[mid] = decoder
        if decode and self._closing is None:
            decoder.start(publication)
        else:
            decoder.stop()
        return decoder.track

    async def answer(self, offer_sdp: str, *, decode: frozenset[str] = frozenset()) -> Answer:
        """Answer ``offer_sdp``; ``decode`` lists kinds whose publications also decode.

        Offers are answered one at a time. Raises :class:`~bridge.errors.OfferError`
        (bogus SDP, with the parser's reason) or :class:`~bridge.errors.UnsupportedCodecError`.
        """
        async with self._answering:
            return await self._answer(offer_sdp, decode)

    async def _answer(self, offer_sdp: str, decode: frozenset[str]) -> Answer:
        if self._closing is not None:
            raise OfferError("the peer connection is closed")
        try:
            description = sdp.SessionDescription.parse(offer_sdp)
        except Exception as exc:
            raise OfferError(f"cannot parse SDP: {exc}") from exc
        _check_offer(description)
        await _validate_with_aiortc(offer_sdp)

        new_media = []
        for media in description.media:
            if media.kind not in ("audio", "video") or media.rtp.muxId in self._known_mids:
                continue
            new_media.append(media)
            direction = _direction(media)
            if direction in ("sendrecv", "recvonly"):
                created = self.pc.addTransceiver(SlotTrack(media.kind), direction="sendrecv")
            else:
                created = self.pc.addTransceiver(media.kind, direction="recvonly")
            created.setCodecPreferences(codec_preferences(media.kind))

        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:
            raise OfferError(str(exc) or type(exc).__name__) from exc

        for media in new_media:
            mid = media.rtp.muxId
            self._known_mids.add(mid)
            found = self._transceiver(mid)
            if found is None:
                continue
            if _direction(media) in ("sendrecv", "sendonly"):
                self._publish(mid, media.kind, found.receiver, media.kind in decode)
            if _direction(media) in ("sendrecv", "recvonly"):
                name = self._slot_name(media.kind)
                self._slot_names[mid] = name
                if name != "main":
                    # an extra slot is its own MediaStream: the browser must not try to
                    # lip-sync it with the programme audio (RFC 8830 msid)
                    set_stream_id(found.sender, f"{self.id}-{name}")

        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        local = self.pc.localDescription
        local_description = sdp.SessionDescription.parse(local.sdp)
        for media in new_media:
            if _direction(media) not in ("sendrecv", "recvonly"):
                continue
            found = self._transceiver(media.rtp.muxId)
            answered = next(
                (m for m in local_description.media if m.rtp.muxId == media.rtp.muxId), None
            )
            if found is None or answered is None:
                continue
            self._subscribe(media, answered, found)
        return Answer(sdp=local.sdp, slots=dict(self._slot_names))

    def _transceiver(self, mid: str) -> RTCRtpTransceiver | None:
        return next((t for t in self.pc.getTransceivers() if t.mid == mid), None)

    def _publish(self, mid: str, kind: str, receiver: RTCRtpReceiver, decode: bool) -> None:
        publication, tap = publish_receiver(
            self.relay, f"{self.id}/{mid}", kind, receiver, decode=decode
        )
        self._taps[mid] = tap
        self._publications[mid] = publication

    def _slot_name(self, kind: str) -> str:
        """``main`` for the first receiving section of a kind, then ``extra1``, ..."""
        taken = {
            name
            for mid, name in self._slot_names.items()
            if (t := self._transceiver(mid)) is not None and t.kind == kind
        }
        if "main" not in taken:
            return "main"
        self._extra += 1
        return f"extra{self._extra}"

    def _subscribe(
        self,
        offered: sdp.MediaDescription,
        answered: sdp.MediaDescription,
        transceiver: RTCRtpTransceiver,
    ) -> None:
        mid = offered.rtp.muxId
        slot, _ = subscribe_sender(self.relay, f"{self.id}/{mid}", transceiver, answered)
        self._slots[mid] = slot

    async def add_ice_candidate(self, candidate: str | None) -> None:
        """A trickled remote candidate (RFC 8838), ``candidate:...``; None or "" ends them.

        Every media section is BUNDLEd on one transport, so the candidate's own mid does not
        matter. Raises :class:`~bridge.errors.IceCandidateError`.
        """
        transceivers = self.pc.getTransceivers()
        if not transceivers or transceivers[0].mid is None:
            raise IceCandidateError("an ICE candidate arrived before any offer")
        if not candidate:
            await self.pc.addIceCandidate(None)
            return
        try:
            parsed = sdp.candidate_from_sdp(candidate.removeprefix("candidate:"))
        except Exception as exc:
            raise IceCandidateError(f"bad ICE candidate {candidate!r}: {exc!r}") from exc
        parsed.sdpMid = transceivers[0].mid
        await self.pc.addIceCandidate(parsed)

    async def close(self, reason: str = "closed") -> None:
        """Close slots, publications and the connection (idempotent, cascading)."""
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        self._closing = asyncio.get_running_loop().create_future()
        self.close_reason = reason
        try:
            for slot in self._slots.values():
                self.relay.remove_slot(slot)
            for publication in self._publications.values():
                self.relay.remove_publication(publication)
            for decoder in self._decoders.values():
                decoder.close()
            await self.pc.close()
            for tap in self._taps.values():
                tap.uninstall()
        finally:
            self._closing.set_result(None)
