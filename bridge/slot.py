"""One negotiated subscriber sender that carries one source at a time.

A :class:`Slot` is switched between publications without SDP renegotiation. Video switches
at the new source's next keyframe (asked for with PLI at once) and only at a frame boundary
of the old source, so the receiver never gets a truncated frame; audio switches at once.
Numbers stay continuous through :class:`~bridge.rtp.StreamRewriter`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Protocol

from .publication import Publication, RelayConfig
from .rtp import RtpPacket, SenderReport, StreamRewriter, is_vp8_keyframe, seq_newer

__all__ = ["DownstreamPort", "Slot"]

logger = logging.getLogger(__name__)


class DownstreamPort(Protocol):
    """Where a slot's packets go (the adapter's :class:`~bridge.aiortc_adapter.SenderPort`)."""

    @property
    def ssrc(self) -> int: ...

    @property
    def ready(self) -> bool: ...

    async def send(self, sequence_number: int, data: bytes, payload_size: int) -> None: ...

    def close(self) -> None: ...


class Slot:
    """A subscriber's sender, fed by at most one publication at a time."""

    def __init__(self, slot_id: str, kind: str, *, config: RelayConfig | None = None) -> None:
        if kind not in ("audio", "video"):
            raise ValueError(f"slot kind must be audio or video, not {kind!r}")
        self.id = slot_id
        self.kind = kind
        self.config = config or RelayConfig()
        self.source: Publication | None = None
        self.pending: Publication | None = None
        self.closed = False
        self.remb: int | None = None
        self.remb_at: float | None = None
        self.switches = 0
        self.packets_forwarded = 0
        self.keyframe_requests = 0
        self._port: DownstreamPort | None = None
        self._rewriter: StreamRewriter | None = None
        self._buffer: deque[tuple[RtpPacket, float]] = deque()
        self._requested_at: float | None = None
        self._source_last_at: float | None = None

    def __repr__(self) -> str:
        return f"Slot({self.id!r}, {self.kind}, source={self.source!r})"

    def connect(self, port: DownstreamPort, rewriter: StreamRewriter) -> None:
        """Attach the negotiated sender; before this the slot forwards nothing."""
        self._port = port
        self._rewriter = rewriter

    @property
    def rewriter(self) -> StreamRewriter | None:
        return self._rewriter

    @property
    def port(self) -> DownstreamPort | None:
        return self._port

    @property
    def buffered(self) -> int:
        """Packets of the next source held until the current one ends its frame."""
        return len(self._buffer)

    # -- routing -------------------------------------------------------------------------

    def switch(self, publication: Publication | None) -> None:
        """Carry ``publication`` from its next keyframe on (audio: next packet); None: blank."""
        if self.closed:
            return
        if publication is not None and publication.kind != self.kind:
            raise ValueError(f"cannot route {publication!r} into {self!r}: kinds differ")
        if publication is not None and publication.closed:
            publication = None
        if publication is self.source:
            self._drop_pending()  # keep carrying it; forget any switch in progress
            return
        if publication is not None and publication is self.pending:
            return
        self._drop_pending()
        if publication is None:
            self._set_source(None)
            return
        if self.kind == "audio":
            self._set_source(publication)
            return
        self.pending = publication
        publication._attach(self)
        self._requested_at = None
        self._ask_keyframe(publication, None)

    def port_ready(self) -> None:
        """The subscriber's transport just connected: a waiting switch asks for a keyframe."""
        if self.pending is not None:
            self._ask_keyframe(self.pending, None)

    def resync(self, publication: Publication) -> None:
        """``publication`` resumes after a mute: restart the stream cleanly."""
        if publication is not self.source or self._rewriter is None:
            return
        if self.kind == "audio":
            self._rewriter.reset()
        else:
            self._set_source(None)
            self.switch(publication)

    def source_closed(self, publication: Publication) -> None:
        """A publication went away: stop waiting for it or carrying it."""
        if publication is self.pending:
            self._drop_pending()
        if publication is self.source:
            self._set_source(None)

    def _set_source(self, publication: Publication | None) -> None:
        old = self.source
        if old is not None and old is not publication and old is not self.pending:
            old._detach(self)
        self.source = publication
        self._source_last_at = None
        if publication is not None:
            publication._attach(self)
            self.switches += 1
            if self._rewriter is not None:
                self._rewriter.reset()

    def _drop_pending(self) -> None:
        if self.pending is not None and self.pending is not self.source:
            self.pending._detach(self)
        self.pending = None
        self._buffer.clear()

    def _ask_keyframe(self, publication: Publication, now: float | None) -> None:
        self._requested_at = now if now is not None else 0.0
        self.keyframe_requests += 1
        publication.request_keyframe()

    # -- feedback from the subscriber ----------------------------------------------------

    def request_keyframe(self) -> None:
        """The subscriber sent PLI or FIR: ask the publisher it is (about to be) fed from."""
        target = self.pending or self.source
        if target is not None:
            target.request_keyframe()

    def on_remb(self, bitrate: int) -> None:
        """The subscriber's receive estimate (REMB); aggregated by the source publication."""
        self.remb = bitrate
        self.remb_at = time.time()
        if self.source is not None:
            self.source.on_remb_changed()

    def sender_report(self) -> SenderReport | None:
        """The source's last sender report in this slot's timestamps (RFC 3550 6.4.1)."""
        source = self.source
        rewriter = self._rewriter
        if source is None or rewriter is None or not rewriter.anchored:
            return None
        report = source.last_sender_report
        if report is None:
            return None
        return SenderReport(
            report.ntp_timestamp, rewriter.translate_timestamp(report.rtp_timestamp)
        )

    # -- media ---------------------------------------------------------------------------

    async def on_rtp(self, publication: Publication, packet: RtpPacket, now: float) -> None:
        """A packet of a publication this slot carries or waits for."""
        if self.closed or self._port is None or not self._port.ready:
            return
        if publication is self.pending:
            await self._on_pending_packet(publication, packet, now)
            return
        if publication is not self.source:
            return
        self._source_last_at = now
        out = self._rewriter.rewrite(packet, now)  # type: ignore[union-attr]  # set with port
        if out is not None:
            self.packets_forwarded += 1
            await self._port.send(out[0], out[1], len(packet.payload))
        if self._buffer and packet.marker:
            await self._commit()  # the old source just finished its frame

    async def _on_pending_packet(
        self, publication: Publication, packet: RtpPacket, now: float
    ) -> None:
        if not self._buffer:
            if not is_vp8_keyframe(packet.payload):
                requested = self._requested_at or 0.0
                if requested == 0.0:
                    self._requested_at = now
                elif now - requested >= self.config.keyframe_retry_s:
                    self._ask_keyframe(publication, now)
                return
            self._buffer.append((packet, now))
        else:
            first = self._buffer[0][0].sequence_number
            if not seq_newer(packet.sequence_number, first):
                return
            self._buffer.append((packet, now))
        rewriter = self._rewriter
        old_done = (
            self.source is None
            or rewriter is None
            or rewriter.last_marker
            or self._source_last_at is None
            or now - self._source_last_at >= self.config.switch_stall_s
            or len(self._buffer) >= self.config.switch_buffer_packets
        )
        if old_done:
            await self._commit()

    async def _commit(self) -> None:
        """Make the pending publication the source, starting with its buffered keyframe."""
        publication = self.pending
        if publication is None or not self._buffer:
            return
        self.pending = None
        self._set_source(publication)
        buffered = list(self._buffer)
        self._buffer.clear()
        for packet, arrived in buffered:
            self._source_last_at = arrived
            await self._forward(packet, arrived)

    async def _forward(self, packet: RtpPacket, now: float) -> None:
        rewriter = self._rewriter
        port = self._port
        if rewriter is None or port is None:
            return
        out = rewriter.rewrite(packet, now)
        if out is None:
            return
        self.packets_forwarded += 1
        await port.send(out[0], out[1], len(packet.payload))

    def close(self) -> None:
        """Stop carrying anything (idempotent)."""
        if self.closed:
            return
        self._drop_pending()
        self._set_source(None)
        self.closed = True
        if self._port is not None:
            self._port.close()
