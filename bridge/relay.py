"""The RTP relay: publications in, subscriber slots out, one routing call in between.

The relay is signalling-agnostic (mediasoup's rule): it knows publications and slots, never
roles or floors. The control plane turns its routing plan into :meth:`Relay.route` calls.
Forwarding is synchronous in the publisher's receive path, with no per-packet queue; the only
buffers are bounded (a switch's held keyframe, each slot's retransmission ring), so a
publisher that vanishes or a subscriber that stops reading cannot stall others or grow memory.
"""

from __future__ import annotations

import logging

from .decode_pool import DecodePool
from .publication import Publication, RelayConfig
from .slot import Slot

__all__ = ["Relay"]

logger = logging.getLogger(__name__)


class Relay:
    """Owns publications and slots; routes each slot to at most one publication.

    :attr:`decode_pool` is the one set of decoding threads that every
    :class:`~bridge.decoder.VideoDecoder` of this relay's peers shares (the wall's feeds:
    25 feeds on one thread cost less than 25 threads, bridge/decode_pool.py); one worker, as
    the wall's compose + encode thread and the event loop need the other core.
    """

    def __init__(self, config: RelayConfig | None = None) -> None:
        self.config = config or RelayConfig()
        self.decode_pool = DecodePool(1, name="decode")
        self._publications: dict[str, Publication] = {}
        self._slots: dict[str, Slot] = {}
        self.closed = False

    @property
    def publications(self) -> dict[str, Publication]:
        return dict(self._publications)

    @property
    def slots(self) -> dict[str, Slot]:
        return dict(self._slots)

    def create_publication(self, publication_id: str, kind: str) -> Publication:
        """A new publication under this relay's config; ids are unique."""
        publication = Publication(publication_id, kind, config=self.config)
        self.add_publication(publication)
        return publication

    def create_slot(self, slot_id: str, kind: str) -> Slot:
        """A new, not yet connected slot under this relay's config; ids are unique."""
        slot = Slot(slot_id, kind, config=self.config)
        self.add_slot(slot)
        return slot

    def add_publication(self, publication: Publication) -> None:
        if self.closed:
            raise RuntimeError("relay is closed")
        if publication.id in self._publications:
            raise ValueError(f"publication {publication.id!r} already exists")
        self._publications[publication.id] = publication

    def add_slot(self, slot: Slot) -> None:
        if self.closed:
            raise RuntimeError("relay is closed")
        if slot.id in self._slots:
            raise ValueError(f"slot {slot.id!r} already exists")
        self._slots[slot.id] = slot

    def remove_publication(self, publication: Publication) -> None:
        """Close the publication; every slot carrying it goes blank (idempotent)."""
        if self._publications.get(publication.id) is publication:
            del self._publications[publication.id]
        publication.close()

    def remove_slot(self, slot: Slot) -> None:
        """Close the slot (idempotent)."""
        if self._slots.get(slot.id) is slot:
            del self._slots[slot.id]
        slot.close()

    def route(self, slot: Slot, publication: Publication | None) -> None:
        """Make ``slot`` carry ``publication`` (None: nothing) without renegotiation.

        Video switches at the publication's next keyframe, requested at once; audio at once.
        """
        if self._slots.get(slot.id) is not slot:
            raise ValueError(f"{slot!r} does not belong to this relay")
        if publication is not None and self._publications.get(publication.id) is not publication:
            raise ValueError(f"{publication!r} does not belong to this relay")
        slot.switch(publication)

    def follow(self, slot: Slot, publication: Publication | None) -> None:
        """:meth:`route`, for callers that re-apply a plan after every change: nothing
        happens when *slot* already carries *publication* or waits for its keyframe; a closed
        slot (its connection ended) is left alone, a closed publication counts as none, and
        a slot or publication of another relay is logged, never raised."""
        if slot.closed:
            return
        if publication is not None and publication.closed:
            publication = None
        if slot.source is publication or (publication is not None and slot.pending is publication):
            return
        try:
            self.route(slot, publication)
        except ValueError:
            logger.exception("cannot route %r to %r", publication, slot)

    def close(self) -> None:
        """Close every slot and publication (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for slot in list(self._slots.values()):
            slot.close()
        for publication in list(self._publications.values()):
            publication.close()
        self._slots.clear()
        self._publications.clear()
        self.decode_pool.close()
