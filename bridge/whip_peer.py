"""The media side of WHIP ingest (RFC 9725) and WHEP playback (draft-ietf-wish-whep).

Signalling-agnostic (mediasoup's rule): this module knows SDP, tracks and packets; who may
publish or watch what is decided by :mod:`web.whip`.

- :class:`WhipPublisher`: one WHIP session. The client offers ``sendonly`` audio and video
  (RFC 9725 section 4.2, max-bundle); the bridge answers ``recvonly``. Opus and VP8 are
  forwarded at RTP level through a :class:`~bridge.aiortc_adapter.ReceiverTap` into a
  :class:`~bridge.publication.Publication`, like any participant's camera. H.264 (what
  encoders, OBS and FFmpeg's ``whip`` muxer send) is transcoded **once** at the edge: aiortc
  decodes it and a :class:`~bridge.vp8_publisher.Vp8Publisher` encodes VP8 into the
  publication. Either way the publisher is a :class:`~bridge.track_reader.DecodedSource`, so
  the wall and the audio mixer can decode it.
- :class:`WhepViewer`: one WHEP session. The client offers ``recvonly`` sections; the
  bridge answers with relay slots (a :class:`~bridge.peer.Peer`), which the caller routes to
  publications with :meth:`WhepViewer.route`. Only VP8 and Opus are negotiated: nothing is
  transcoded per viewer.
- :func:`parse_trickle_fragment` reads an ``application/trickle-ice-sdpfrag`` body
  (RFC 8840 section 9, RFC 9725 section 4.3.1) for the PATCH requests.

aiortc has no ICE restart, so a fragment with new ICE credentials cannot be honoured: the
caller answers it with 422 (RFC 9725 section 4.3.1: trickle supported, restart not). Both
peers end by themselves when ICE or DTLS fails, consent expires (RFC 7675), or no connection
comes up within ``connect_timeout_s``; ``on_vanish`` tells the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
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
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from .aiortc_adapter import ReceiverTap
from .encoder import EncoderConfig
from .errors import IceCandidateError, OfferError, UnsupportedCodecError
from .leg import codec_preferences, publish_receiver
from .peer import Peer, PeerConfig
from .publication import Publication
from .relay import Relay
from .slot import Slot
from .track_reader import LatestFrameTrack
from .vp8_publisher import Vp8Publisher

__all__ = [
    "INGEST_CODECS",
    "IngestConfig",
    "TrickleFragment",
    "WhepViewer",
    "WhipPublisher",
    "parse_trickle_fragment",
]

logger = logging.getLogger(__name__)

#: media kind → codecs a WHIP client may send, in the bridge's order of preference
#: (the first one offered is answered; VP8 is forwarded, H.264 transcoded to VP8).
INGEST_CODECS: dict[str, tuple[str, ...]] = {"video": ("VP8", "H264"), "audio": ("opus",)}


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """WHIP / WHEP peers (owned by :mod:`bridge`; the composition root may override).

    - ``encoder``: the VP8 encoder of an H.264 ingest's transcode (2 Mbit/s: a 720p camera).
    - ``fps_hint``: the frame rate the transcode's encoder plans its rate control for.
    - ``connect_timeout_s``: a session whose ICE + DTLS is not up by then is ended.
    """

    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(bitrate=2_000_000))
    fps_hint: int = 30
    connect_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.connect_timeout_s <= 0:
            raise ValueError("connect_timeout_s must be positive")


# -- SDP helpers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrickleFragment:
    """An ``application/trickle-ice-sdpfrag`` body (RFC 8840 section 9).

    ``ufrag`` / ``pwd``: the ICE credentials it names (None when absent); ``candidates``: the
    ``candidate:...`` attribute values in order; ``end``: ``a=end-of-candidates`` was given.
    """

    ufrag: str | None
    pwd: str | None
    candidates: tuple[str, ...]
    end: bool


def parse_trickle_fragment(text: str) -> TrickleFragment:
    """Parse a trickle-ICE SDP fragment; ValueError (with the reason) when it is not one."""
    ufrag = pwd = None
    candidates: list[str] = []
    end = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or line[0] not in "am":
            raise ValueError(f"line {number}: not an SDP fragment line: {line[:60]!r}")
        if line.startswith("a=ice-ufrag:"):
            ufrag = line.removeprefix("a=ice-ufrag:")
        elif line.startswith("a=ice-pwd:"):
            pwd = line.removeprefix("a=ice-pwd:")
        elif line.startswith("a=candidate:"):
            value = line.removeprefix("a=")
            try:
                sdp.candidate_from_sdp(value.removeprefix("candidate:"))
            except Exception as exc:
                raise ValueError(f"line {number}: bad ICE candidate: {exc!r}") from None
            candidates.append(value)
        elif line == "a=end-of-candidates":
            end = True
    return TrickleFragment(ufrag, pwd, tuple(candidates), end)


def _parse_offer(offer_sdp: str) -> sdp.SessionDescription:
    if not offer_sdp.strip():
        raise OfferError("the body is empty; send an SDP offer")
    try:
        return sdp.SessionDescription.parse(offer_sdp)
    except Exception as exc:
        raise OfferError(f"cannot parse SDP: {exc!r}") from exc


def _media_sections(description: sdp.SessionDescription) -> list[sdp.MediaDescription]:
    media = [m for m in description.media if m.kind in ("audio", "video")]
    if not media:
        raise OfferError("the offer has no audio or video media section")
    bundle = next((g for g in description.group if g.semantic == "BUNDLE"), None)
    mids = {m.rtp.muxId for m in media}
    if bundle is None or not mids <= set(bundle.items):
        raise OfferError("the offer must BUNDLE all its media sections (RFC 8843, max-bundle)")
    return media


def _direction(media: sdp.MediaDescription) -> str:
    return media.direction or "sendrecv"


def _remote_ufrag(description: sdp.SessionDescription) -> str | None:
    for media in description.media:
        if media.ice is not None and media.ice.usernameFragment:
            return str(media.ice.usernameFragment)
    return None


def _ice_servers(config: PeerConfig) -> list[RTCIceServer]:
    return [
        RTCIceServer(urls=url, username=config.ice_username, credential=config.ice_credential)
        for url in config.ice_servers
    ]


async def _add_candidate(pc: RTCPeerConnection, candidate: str | None) -> None:
    """A trickled remote candidate (``candidate:...``); None ends them (RFC 8838)."""
    transceivers = pc.getTransceivers()
    if not transceivers or transceivers[0].mid is None:
        raise IceCandidateError("an ICE candidate arrived before any offer")
    if not candidate:
        await pc.addIceCandidate(None)
        return
    try:
        parsed = sdp.candidate_from_sdp(candidate.removeprefix("candidate:"))
    except Exception as exc:
        raise IceCandidateError(f"bad ICE candidate {candidate!r}: {exc!r}") from exc
    parsed.sdpMid = transceivers[0].mid  # BUNDLE: one transport for every section
    await pc.addIceCandidate(parsed)


class _Lifetime:
    """Ends a peer when its connection fails, closes, or never comes up in time."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        timeout_s: float,
        on_end: Callable[[str], None],
    ) -> None:
        self.pc = pc
        self.timeout_s = timeout_s
        self._on_end = on_end
        self._timer: asyncio.TimerHandle | None = None
        self.ended = False
        pc.on("connectionstatechange", self._on_state)

    def arm(self) -> None:
        if self._timer is None and not self.ended:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.timeout_s, self._timeout)

    def _timeout(self) -> None:
        self._timer = None
        if self.pc.connectionState != "connected":
            self._end(f"no ICE/DTLS connection within {self.timeout_s:g} s")

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self._timer is not None:
            self._timer.cancel()
            self._timer = None
        elif state == "failed":
            self._end("ICE or DTLS failed (or consent expired)")
        elif state == "closed":
            self._end("the connection closed")

    def _end(self, reason: str) -> None:
        if not self.ended:
            self.ended = True
            self._on_end(reason)

    def cancel(self) -> None:
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


# -- WHIP -------------------------------------------------------------------------------------


class WhipPublisher:
    """One WHIP ingest session: a site's camera and microphone as relay publications.

    Publication ids are ``"<publisher_id>/video"`` and ``"<publisher_id>/audio"``; they are
    added to *relay* by :meth:`answer` and removed by :meth:`close` (idempotent, cascading to
    the transcoder, the taps and the ``RTCPeerConnection``). ``on_vanish(reason)`` is called
    once when the client went away without DELETE (ICE/DTLS failure, consent expiry, no
    connection in time); the caller then closes the publisher.
    """

    def __init__(
        self,
        publisher_id: str,
        relay: Relay,
        *,
        peer_config: PeerConfig | None = None,
        config: IngestConfig | None = None,
        on_vanish: Callable[[str], None] | None = None,
    ) -> None:
        self.id = publisher_id
        self.relay = relay
        self.config = config or IngestConfig()
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=_ice_servers(peer_config or PeerConfig()),
                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
            )
        )
        self.publications: dict[str, Publication] = {}  # kind → publication
        self.codecs: dict[str, str] = {}  # kind → codec received ("VP8", "H264", "opus")
        self.remote_ufrag: str | None = None
        self.frames_decoded = 0  # H.264 frames decoded for the transcode
        self.close_reason: str | None = None
        self.transcoder: Vp8Publisher | None = None
        self._taps: dict[str, ReceiverTap] = {}
        self._receivers: dict[str, RTCRtpReceiver] = {}
        self._decoded: LatestFrameTrack | None = None
        self._decode_video = False
        self._reader: asyncio.Task[None] | None = None
        self._answered = False
        self._closing: asyncio.Future[None] | None = None
        self._on_vanish = on_vanish
        self._lifetime = _Lifetime(self.pc, self.config.connect_timeout_s, self._vanished)

    def __repr__(self) -> str:
        return f"WhipPublisher({self.id!r})"

    @property
    def connected(self) -> bool:
        return self.pc.connectionState == "connected"

    @property
    def closed(self) -> bool:
        return self._closing is not None

    # -- offer / answer ------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """Answer the client's offer (once). Raises :class:`~bridge.errors.OfferError` with
        the reason (bogus SDP, not sendonly, no supported codec: ``UnsupportedCodecError``)."""
        if self._answered or self.closed:
            raise OfferError("this WHIP session has been negotiated already")
        self._answered = True
        description = _parse_offer(offer_sdp)
        wanted: list[tuple[str, str, str]] = []  # (mid, kind, codec)
        for media in _media_sections(description):
            direction = _direction(media)
            if direction == "inactive":
                continue
            if direction not in ("sendonly", "sendrecv"):
                raise OfferError(
                    f"the {media.kind} section (mid {media.rtp.muxId}) is {direction}: "
                    "a WHIP client sends media (sendonly)"
                )
            if any(kind == media.kind for _, kind, _ in wanted):
                raise OfferError(f"the offer has more than one {media.kind} section")
            names = [c.name for c in media.rtp.codecs]
            offered = {n.lower() for n in names}
            codec = next((c for c in INGEST_CODECS[media.kind] if c.lower() in offered), None)
            if codec is None:
                raise UnsupportedCodecError(media.kind, media.rtp.muxId, names)
            wanted.append((str(media.rtp.muxId), media.kind, codec))
        if not wanted:
            raise OfferError("the offer sends no media (every section is inactive)")
        self.remote_ufrag = _remote_ufrag(description)

        for _, kind, codec in wanted:
            created = self.pc.addTransceiver(kind, direction="recvonly")
            created.setCodecPreferences(codec_preferences(kind, codec))
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:
            raise OfferError(str(exc) or type(exc).__name__) from exc
        for mid, kind, codec in wanted:
            transceiver = self._transceiver(mid)
            if transceiver is None:
                raise OfferError(f"no transceiver for mid {mid}")
            self._receive(kind, codec, transceiver.receiver)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        self._lifetime.arm()
        return str(self.pc.localDescription.sdp)

    def _transceiver(self, mid: str) -> RTCRtpTransceiver | None:
        return next((t for t in self.pc.getTransceivers() if t.mid == mid), None)

    def _receive(self, kind: str, codec: str, receiver: RTCRtpReceiver) -> None:
        self.codecs[kind] = codec
        self._receivers[kind] = receiver
        if codec == "H264":  # decode here, encode VP8 once (ARCHITECTURE.md: at the edge)
            transcoder = Vp8Publisher(
                f"{self.id}/{kind}",
                encoder=self.config.encoder,
                fps_hint=self.config.fps_hint,
                relay_config=self.relay.config,
            )
            self.relay.add_publication(transcoder.publication)
            transcoder.start()
            self.transcoder = transcoder
            self.publications[kind] = transcoder.publication
            self._decoded = LatestFrameTrack()
            self._reader = asyncio.ensure_future(self._transcode(receiver.track))
            return
        publication, tap = publish_receiver(self.relay, f"{self.id}/{kind}", kind, receiver)
        self._taps[kind] = tap
        self.publications[kind] = publication

    async def _transcode(self, track: MediaStreamTrack) -> None:
        """Read aiortc's decoded H.264 frames: each goes to the VP8 transcoder (and the
        wall's feed while it decodes this source)."""
        transcoder = self.transcoder
        assert transcoder is not None
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, VideoFrame):
                    continue
                self.frames_decoded += 1
                transcoder.submit(frame, time.monotonic())
                if self._decode_video and self._decoded is not None:
                    self._decoded.put(frame)
        except MediaStreamError:
            pass  # the connection ended
        except Exception:
            logger.exception("%r: the H.264 transcode failed", self)

    # -- DecodedSource ---------------------------------------------------------------------

    def set_decode(self, kind: str, decode: bool) -> MediaStreamTrack | None:
        """Decoded frames of this session's *kind* for the wall or the mixer (or stop)."""
        if kind == "video" and self._decoded is not None:  # H.264: frames exist already
            self._decode_video = decode
            return self._decoded
        tap = self._taps.get(kind)
        receiver = self._receivers.get(kind)
        if tap is None or receiver is None:
            return None
        tap.set_decode(decode)
        if decode:
            self.publications[kind].request_keyframe()
        return receiver.track

    # -- trickle / close -----------------------------------------------------------------

    async def add_ice_candidate(self, candidate: str | None) -> None:
        """A trickled candidate ``candidate:...`` (None: end of candidates)."""
        await _add_candidate(self.pc, candidate)

    def _vanished(self, reason: str) -> None:
        logger.info("%r: %s", self, reason)
        if self._on_vanish is not None and not self.closed:
            self._on_vanish(reason)

    async def close(self, reason: str = "closed") -> None:
        """Remove the publications, stop the transcode, close the connection (idempotent)."""
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        self._closing = asyncio.get_running_loop().create_future()
        self.close_reason = reason
        self._lifetime.cancel()
        try:
            for publication in self.publications.values():
                self.relay.remove_publication(publication)
            if self._reader is not None:
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
            if self._decoded is not None:
                self._decoded.stop()
            if self.transcoder is not None:
                await self.transcoder.close()
            await self.pc.close()
            for tap in self._taps.values():
                tap.uninstall()
        finally:
            self._closing.set_result(None)


# -- WHEP -------------------------------------------------------------------------------------


class WhepViewer:
    """One WHEP playback session: ``main`` video and audio slots of the relay.

    The viewer's slots carry whatever :meth:`route` points them at (no renegotiation, the
    relay switches at the next keyframe). ``on_vanish(reason)`` as for
    :class:`WhipPublisher`.
    """

    def __init__(
        self,
        viewer_id: str,
        relay: Relay,
        *,
        peer_config: PeerConfig | None = None,
        config: IngestConfig | None = None,
        on_vanish: Callable[[str], None] | None = None,
    ) -> None:
        self.id = viewer_id
        self.relay = relay
        self.config = config or IngestConfig()
        self.peer = Peer(viewer_id, relay, config=peer_config)
        self.remote_ufrag: str | None = None
        self._answered = False
        self._on_vanish = on_vanish
        self._lifetime = _Lifetime(self.peer.pc, self.config.connect_timeout_s, self._vanished)

    def __repr__(self) -> str:
        return f"WhepViewer({self.id!r})"

    @property
    def connected(self) -> bool:
        return self.peer.pc.connectionState == "connected"

    @property
    def closed(self) -> bool:
        return self.peer.close_reason is not None

    @property
    def video(self) -> Slot | None:
        return self.peer.slot("main", "video")

    @property
    def audio(self) -> Slot | None:
        return self.peer.slot("main", "audio")

    async def answer(self, offer_sdp: str) -> str:
        """Answer a ``recvonly`` offer (once); :class:`~bridge.errors.OfferError` otherwise."""
        if self._answered or self.closed:
            raise OfferError("this WHEP session has been negotiated already")
        self._answered = True
        description = _parse_offer(offer_sdp)
        kinds: set[str] = set()
        for media in _media_sections(description):
            direction = _direction(media)
            if direction not in ("recvonly", "inactive"):
                raise OfferError(
                    f"the {media.kind} section (mid {media.rtp.muxId}) is {direction}: "
                    "a WHEP client only receives (recvonly)"
                )
            if direction == "recvonly" and media.kind in kinds:
                raise OfferError(f"the offer receives more than one {media.kind} section")
            kinds.add(media.kind)
        self.remote_ufrag = _remote_ufrag(description)
        answer = await self.peer.answer(offer_sdp)
        self._lifetime.arm()
        return answer.sdp

    def route(self, video: Publication | None, audio: Publication | None) -> None:
        """Make the slots carry *video* and *audio* (None: nothing); no-op when unchanged."""
        self.route_video(video)
        self.route_audio(audio)

    def route_video(self, publication: Publication | None) -> None:
        """Make the ``main`` video slot carry *publication* (None: nothing)."""
        self._route(self.video, publication)

    def route_audio(self, publication: Publication | None) -> None:
        """Make the ``main`` audio slot carry *publication* (None: nothing)."""
        self._route(self.audio, publication)

    def _route(self, slot: Slot | None, publication: Publication | None) -> None:
        if slot is not None:
            self.relay.follow(slot, publication)

    async def add_ice_candidate(self, candidate: str | None) -> None:
        """A trickled candidate ``candidate:...`` (None: end of candidates)."""
        await self.peer.add_ice_candidate(candidate)

    def _vanished(self, reason: str) -> None:
        logger.info("%r: %s", self, reason)
        if self._on_vanish is not None:
            self._on_vanish(reason)

    async def close(self, reason: str = "closed") -> None:
        """Close the slots and the connection (idempotent)."""
        self._lifetime.cancel()
        await self.peer.close(reason)
