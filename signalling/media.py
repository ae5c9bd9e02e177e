"""The media plane as the signalling server sees it: one :class:`bridge.peer.Peer` per session,
routed by the conference's plan (ARCHITECTURE.md: the bridge knows SDP, tracks and packets;
the decisions are made here).

After every change of the conference the server calls :meth:`MediaBridge.apply` with the new
:class:`~signalling.routing.RoutingPlan`; it re-points slots whose source changed (the relay
switches at the next keyframe, without renegotiation) and mutes at the relay every publication
whose site is muted, so a muted site's audio is not forwarded at all.

Programme audio: the protocol negotiates one audio slot (``main``) per subscriber, and the plan
names its sources (the chair and the floor holder, minus the subscriber, minus muted sites). A
slot with one live source carries that site's own RTP, forwarded as is: the chair hears the
floor holder, the floor holder hears the chair, and with no floor everyone hears the chair. A
slot with two carries the server's mix (:class:`bridge.mixer.AudioMixer`, published as
``programme-audio``), and only then are those two microphones decoded. Mix-minus holds by
construction: no one is routed their own audio. Without a mixer (:meth:`MediaBridge.use_mixer`
not called) such a slot falls back to the floor holder alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from bridge.errors import OfferError, UnsupportedCodecError
from bridge.mixer import AudioMixer
from bridge.peer import Peer, PeerConfig
from bridge.publication import Publication
from bridge.relay import Relay
from bridge.slot import Slot
from bridge.track_reader import DecodedSource

from .conference import Conference
from .errors import BadRequest, Conflict
from .model import SessionId, Site, SiteId
from .routing import RoutingPlan

__all__ = ["MediaBridge"]

logger = logging.getLogger(__name__)


class MediaBridge:
    """Implements :class:`signalling.server.MediaPlane` on the bridge's relay."""

    def __init__(
        self, conference: Conference, relay: Relay, peer_config: PeerConfig | None = None
    ) -> None:
        self.conference = conference
        self.relay = relay
        self.peer_config = peer_config or PeerConfig()
        self._peers: dict[SessionId, Peer] = {}
        self._sites: dict[SessionId, SiteId] = {}
        #: Publications made by the server itself (wall outputs, gateways), by source id.
        self.local_sources: dict[str, dict[str, Publication]] = {}
        #: Gateways whose sources can also be decoded (a camera on the wall), by source id.
        self.local_decoders: dict[str, DecodedSource] = {}
        #: Called with the plan after every :meth:`apply` (the wall director follows it).
        self.listeners: list[Callable[[RoutingPlan], None]] = []
        #: The programme audio mix (:meth:`use_mixer`); None: one source per slot only.
        self.mixer: AudioMixer | None = None
        #: Server-side programme listeners (:meth:`carry_programme`), by key.
        self._programme_slots: dict[str, tuple[Slot | None, Slot | None, SiteId | None]] = {}

    # -- MediaPlane ---------------------------------------------------------------------------

    async def offer(self, session: SessionId, site: Site, sdp: str) -> tuple[str, dict[str, str]]:
        peer = self._peers.get(session)
        if peer is None:
            peer = Peer(f"{site.id}#{session}", self.relay, config=self.peer_config)
            self._peers[session] = peer
            self._sites[session] = site.id
        try:
            answer = await peer.answer(sdp)
        except UnsupportedCodecError as exc:
            raise BadRequest(f"offer: {exc}") from None
        except OfferError as exc:
            raise BadRequest(f"offer: not a usable SDP offer: {exc}") from None
        self.apply(self.conference.plan)
        return answer.sdp, dict(answer.slots)

    async def candidate(self, session: SessionId, candidate: Mapping[str, Any] | None) -> None:
        peer = self._peers.get(session)
        if peer is None:
            raise Conflict("send an offer before candidates")
        line = None if candidate is None else candidate.get("candidate")
        if line is not None and not isinstance(line, str):
            raise BadRequest("candidate: field 'candidate' must be a string")
        try:
            await peer.add_ice_candidate(line or None)
        except Exception as exc:
            raise BadRequest(f"candidate: {exc}") from None

    async def close_session(self, session: SessionId) -> None:
        peer = self._peers.pop(session, None)
        self._sites.pop(session, None)
        if peer is not None:
            await peer.close("session ended")
            self.apply(self.conference.plan)

    async def close(self) -> None:
        for session in list(self._peers):
            await self.close_session(session)
        if self.mixer is not None:
            mixer, self.mixer = self.mixer, None
            self.local_sources.pop(mixer.id, None)
            self.relay.remove_publication(mixer.publication)
            await mixer.close()
        self.relay.close()

    def use_mixer(self, mixer: AudioMixer) -> None:
        """Publish *mixer* as the programme audio mix and route two-source slots to it."""
        self.mixer = mixer
        self.relay.add_publication(mixer.publication)
        self.local_sources[mixer.id] = {"audio": mixer.publication}
        mixer.start()
        self.apply(self.conference.plan)

    def carry_programme(
        self,
        key: str,
        *,
        video: Slot | None = None,
        audio: Slot | None = None,
        minus: SiteId | None = None,
    ) -> None:
        """Keep *video* and *audio* (slots of :attr:`relay` connected to the caller's own
        downstream: the recorder, the cascade uplink) routed to the programme as a terminal
        at *minus* would get it (:meth:`RoutingPlan.programme_for`) after every plan, until
        :meth:`drop_programme`. Pair it with ``Conference.want_programme`` so the programme's
        publishers are not paused while nobody else watches."""
        self._programme_slots[key] = (video, audio, minus)
        self.apply(self.conference.plan)

    def drop_programme(self, key: str) -> None:
        """Stop routing *key*'s slots (they go blank); idempotent."""
        slots = self._programme_slots.pop(key, None)
        if slots is None:
            return
        for slot in slots[:2]:
            if slot is not None and not slot.closed and slot.source is not None:
                self.relay.route(slot, None)
        self.apply(self.conference.plan)

    # -- routing ------------------------------------------------------------------------------

    def peer_of(self, site: str) -> Peer | None:
        """The connected peer of *site*'s live session, if it has one."""
        session = self.conference.live_session(SiteId(site))
        return self._peers.get(session) if session is not None else None

    def source_of(self, source: str) -> DecodedSource | None:
        """What decodes *source* for the wall or the mix: its live peer, or its gateway."""
        return self.local_decoders.get(source) or self.peer_of(source)

    def publication(self, source: str | None, kind: str) -> Publication | None:
        """The publication that carries *source* (a site or a local output) of *kind*."""
        if source is None:
            return None
        local = self.local_sources.get(source)
        if local is not None:
            return local.get(kind)
        session = self.conference.live_session(SiteId(source))
        peer = self._peers.get(session) if session is not None else None
        return peer.publication(kind) if peer is not None else None

    def apply(self, plan: RoutingPlan) -> None:
        """Make every slot carry what *plan* says; mute muted sites' audio at the relay."""
        muted = self.conference.audio_muted()
        mixed: dict[str, DecodedSource | None] = {}  # the sources some slot hears mixed
        for session, peer in self._peers.items():
            site = self._sites[session]
            microphone = peer.publication("audio")
            if microphone is not None:
                microphone.muted = site in muted
            route = plan.route(session)
            if route is None:
                continue
            for slot_name, source in route.video.items():
                slot = peer.slot(slot_name, "video")
                if slot is not None:
                    self.relay.follow(slot, self.publication(source, "video"))
            slot = peer.slot("main", "audio")
            if slot is not None:
                self.relay.follow(slot, self._programme_audio(route.audio, mixed))
        for video_slot, audio_slot, minus in tuple(self._programme_slots.values()):
            programme = plan.programme_for(minus)
            if video_slot is not None:
                self.relay.follow(video_slot, self.publication(programme.video["main"], "video"))
            if audio_slot is not None:
                self.relay.follow(audio_slot, self._programme_audio(programme.audio, mixed))
        if self.mixer is not None:
            self.mixer.update(mixed)
        for listener in tuple(self.listeners):
            try:
                listener(plan)
            except Exception:
                logger.exception("a media plan listener failed")

    def _programme_audio(
        self, sources: tuple[SiteId, ...], mixed: dict[str, DecodedSource | None]
    ) -> Publication | None:
        """What a ``main`` audio slot with programme audio *sources* carries: nothing, the one
        live source's own publication, or the mix (whose sources go into *mixed*)."""
        live = [s for s in sources if (p := self.publication(s, "audio")) and not p.closed]
        if len(live) < 2 or self.mixer is None:
            return self.publication(live[-1], "audio") if live else None  # floor, else chair
        mixed.update((s, self.source_of(s)) for s in live)
        return self.mixer.publication
