"""The cascade uplink's own ``RTCPeerConnection`` towards an upper-level server (级联).

Towards the upper level this server is a client: it offers the way PROTOCOL.md ("Media") says a
terminal does — audio sendrecv, then video sendrecv, BUNDLEd (RFC 8843), VP8 (with RTX,
RFC 4588) and Opus only — and the upper server answers. What it sends and receives never goes
through a codec here:

- **sent** (this level's programme up): each sender is a relay :class:`~bridge.slot.Slot` of
  *this* server's relay, connected through :class:`~bridge.aiortc_adapter.SenderPort` and a
  :class:`~bridge.rtp.StreamRewriter` exactly like a subscriber's slot (see
  :meth:`bridge.peer.Peer._subscribe`). Whoever owns the uplink routes the slots (to the
  programme, a wall output or nothing) and they switch without renegotiation. PLI/FIR from the
  upper level reach the slot's source (RFC 4585 6.3.1), NACKs are answered from the port's
  history (RFC 4585 6.2.1), REMB is aggregated at the source like any subscriber's.
- **received** (the upper programme down): each receiver is tapped by a
  :class:`~bridge.aiortc_adapter.ReceiverTap` into a :class:`~bridge.publication.Publication`
  of this relay (see :meth:`bridge.peer.Peer._publish`), so local slots carry the upper
  programme like any publisher's track; their PLIs travel up as PLIs. Decoding (for the wall or
  the audio mix) happens only when :meth:`UplinkPeer.set_decode` asks for it: video by a
  :class:`~bridge.decoder.VideoDecoder` on the relay's RTP, audio by aiortc's receiver.

The peer knows SDP, tracks and packets; who is on the floor and what counts as the programme
is decided elsewhere (:mod:`signalling.uplink`). ``close()`` is idempotent and cascades to
slots, publications, taps and the connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
    sdp,
)

from .aiortc_adapter import ReceiverTap, SenderPort, SlotTrack
from .decoder import VideoDecoder
from .errors import OfferError
from .leg import codec_preferences, publish_receiver, subscribe_sender
from .peer import PeerConfig
from .publication import Publication
from .relay import Relay
from .slot import Slot

__all__ = ["UplinkPeer"]

logger = logging.getLogger(__name__)

_KINDS = ("audio", "video")  # PROTOCOL.md "Media": audio first, then video


class UplinkPeer:
    """One connection to the upper level: two slots up (audio, video), two publications down.

    Slot and publication ids are ``"<peer_id>/<mid>"`` in ``relay``. Use::

        peer = UplinkPeer("uplink#1", relay)
        answer = await upper.offer(await peer.offer())   # over the signalling client
        await peer.accept(answer)
        await peer.connected(timeout=20)
        relay.route(peer.slot("video"), programme)        # what goes up
        peer.publication("video")                          # what came down
    """

    def __init__(
        self,
        peer_id: str,
        relay: Relay,
        *,
        config: PeerConfig | None = None,
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        self.id = peer_id
        self.relay = relay
        self.config = config or PeerConfig()
        self.on_state = on_state
        servers = [
            RTCIceServer(
                urls=url,
                username=self.config.ice_username,
                credential=self.config.ice_credential,
            )
            for url in self.config.ice_servers
        ]
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self._tracks: dict[str, SlotTrack] = {}
        self._transceivers: dict[str, RTCRtpTransceiver] = {}  # kind → transceiver
        self._slots: dict[str, Slot] = {}  # kind → slot (what goes up)
        self._ports: dict[str, SenderPort] = {}
        self._publications: dict[str, Publication] = {}  # kind → publication (what came down)
        self._taps: dict[str, ReceiverTap] = {}
        self._decoder: VideoDecoder | None = None  # the received video, while decoded
        self._offered = False
        self._accepted = False
        self._closing: asyncio.Future[None] | None = None
        self.close_reason: str | None = None
        self.connected_at: float | None = None
        self.pc.on("connectionstatechange", self._on_state)

    def __repr__(self) -> str:
        return f"UplinkPeer({self.id!r}, {self.pc.connectionState})"

    # -- what is negotiated --------------------------------------------------------------

    @property
    def state(self) -> str:
        """The W3C ``RTCPeerConnectionState`` (``new``, ``connecting``, ``connected``, ...)."""
        return str(self.pc.connectionState)

    @property
    def closed(self) -> bool:
        return self._closing is not None

    def slot(self, kind: str) -> Slot | None:
        """The slot whose RTP goes up to the upper level (after :meth:`accept`)."""
        return self._slots.get(kind)

    def publication(self, kind: str) -> Publication | None:
        """The upper level's programme of ``kind`` as a publication here (after :meth:`accept`)."""
        return self._publications.get(kind)

    def set_decode(self, kind: str, decode: bool) -> MediaStreamTrack | None:
        """Also decode the received ``kind`` (the wall, the audio mix) or stop doing so
        (:class:`bridge.track_reader.DecodedSource`). Returns the track yielding decoded frames.

        As for a participant (:meth:`bridge.peer.Peer.set_decode`): video through a
        :class:`~bridge.decoder.VideoDecoder` fed by the relay's RTP (from the next keyframe,
        asked for at once; the track lives until the peer closes), audio through aiortc's own
        receiver (the tap lets its decoder run).
        """
        publication = self._publications.get(kind)
        tap = self._taps.get(kind)
        transceiver = self._transceivers.get(kind)
        if publication is None or tap is None or transceiver is None:
            return None
        if kind == "video":
            decoder = self._decoder
            if decoder is None:
                if not decode or self.closed:
                    return None
                decoder = self._decoder = VideoDecoder(
                    f"{self.id}/{transceiver.mid}",
                    config=self.config.decoder,
                    relay_config=self.relay.config,
                    pool=self.relay.decode_pool,
                )
            if decode and not self.closed:
                decoder.start(publication)
            else:
                decoder.stop()
            return decoder.track
        tap.set_decode(decode)
        return transceiver.receiver.track

    def decoding(self, kind: str) -> bool:
        """Whether the received ``kind`` is decoded too (:meth:`set_decode`)."""
        if kind == "video":
            return self._decoder is not None and self._decoder.running
        tap = self._taps.get(kind)
        return tap is not None and tap.decode

    def stats(self) -> dict[str, dict[str, int]]:
        """Packets sent up per kind, and received down per kind (for the status API)."""
        return {
            "sent": {k: s.packets_forwarded for k, s in self._slots.items()},
            "received": {k: p.packets_received for k, p in self._publications.items()},
        }

    # -- offer / answer ------------------------------------------------------------------

    async def offer(self) -> str:
        """The SDP offer (RFC 8829 JSEP): audio sendrecv, video sendrecv, all candidates in."""
        if self._offered or self.closed:
            raise OfferError("this uplink peer has already offered (or is closed)")
        self._offered = True
        for kind in _KINDS:
            track = SlotTrack(kind)
            self._tracks[kind] = track
            transceiver = self.pc.addTransceiver(track, direction="sendrecv")
            transceiver.setCodecPreferences(codec_preferences(kind))
            self._transceivers[kind] = transceiver
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        """Apply the upper server's answer and wire slots and publications to the relay.

        Raises :class:`~bridge.errors.OfferError` when the answer is unusable.
        """
        if not self._offered or self._accepted or self.closed:
            raise OfferError("accept() needs a pending offer")
        try:
            answer = sdp.SessionDescription.parse(answer_sdp)
        except Exception as exc:
            raise OfferError(f"cannot parse the answer: {exc}") from exc
        # install the taps first: RTP may follow the DTLS handshake at once
        for kind, transceiver in self._transceivers.items():
            publication, tap = publish_receiver(
                self.relay, f"{self.id}/{transceiver.mid}", kind, transceiver.receiver
            )
            self._taps[kind] = tap
            self._publications[kind] = publication
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        except Exception as exc:
            raise OfferError(f"the answer was refused: {exc or type(exc).__name__}") from exc
        self._accepted = True
        for kind, transceiver in self._transceivers.items():
            answered = next((m for m in answer.media if m.rtp.muxId == transceiver.mid), None)
            if answered is None or (answered.direction or "sendrecv") not in (
                "sendrecv",
                "recvonly",
            ):
                continue  # the upper level does not take this kind from us
            self._connect_slot(kind, transceiver, answered)
        if self.pc.connectionState == "connected":
            self._on_state()

    def _connect_slot(
        self, kind: str, transceiver: RTCRtpTransceiver, answered: sdp.MediaDescription
    ) -> None:
        slot, port = subscribe_sender(
            self.relay, f"{self.id}/{transceiver.mid}", transceiver, answered
        )
        self._slots[kind] = slot
        self._ports[kind] = port

    async def connected(self, timeout: float) -> None:
        """Wait until ICE and DTLS are up; :class:`ConnectionError` on failure or timeout."""
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if self.pc.connectionState in ("failed", "closed") or self.closed:
                raise ConnectionError(f"uplink media failed ({self.pc.connectionState})")
            if time.monotonic() > deadline:
                raise ConnectionError(f"uplink media did not connect in {timeout:g} s")
            await asyncio.sleep(0.05)

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            if self.connected_at is None:
                self.connected_at = time.monotonic()
            for slot in self._slots.values():
                slot.port_ready()  # a switch waiting for its keyframe asks again now
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:
                logger.exception("uplink peer state callback failed")

    # -- the end -------------------------------------------------------------------------

    async def close(self, reason: str = "closed") -> None:
        """Close slots, publications, taps and the connection (idempotent, cascading)."""
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
            if self._decoder is not None:
                self._decoder.close()
            for track in self._tracks.values():
                track.stop()
            await self.pc.close()
            for tap in self._taps.values():
                tap.uninstall()
        finally:
            self._closing.set_result(None)
