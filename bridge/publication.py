"""One publisher track as the relay sees it: RTP in, keyframe state, PLI coalescing, REMB.

A :class:`Publication` knows nothing of aiortc: packets arrive through :meth:`on_rtp`, and
feedback to the publisher leaves through an :class:`UpstreamPort` (the adapter's receiver
tap implements it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .rtp import RtpPacket, SenderReport, is_vp8_keyframe

if TYPE_CHECKING:
    from .slot import Slot

__all__ = ["Publication", "RelayConfig", "UpstreamPort"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Tuning of the RTP relay (owned by :mod:`bridge`; the composition root may override).

    - ``pli_interval_s``: PLIs to one publisher are at least this far apart; requests in
      between are coalesced into one deferred PLI, never dropped (FIELD-NOTES.md).
    - ``keyframe_retry_s``: a slot still waiting for a keyframe asks again after this long.
    - ``switch_stall_s``: when the new source's keyframe is ready but the old source stopped
      mid-frame this long ago, switch anyway.
    - ``switch_buffer_packets``: bound on packets held while the old source finishes a frame.
    - ``video_history_packets`` / ``audio_history_packets``: per-slot retransmission history
      (256 packets of ~1200 bytes ≈ 1.2 s at 2 Mbit/s; aiortc keeps 128).
    - ``remb_interval_s``: REMB towards a publisher at most this often unless it drops by
      more than ``remb_drop_ratio``; ``remb_max_age_s``: older subscriber estimates are ignored.
    """

    pli_interval_s: float = 0.1
    keyframe_retry_s: float = 0.5
    switch_stall_s: float = 0.1
    switch_buffer_packets: int = 512
    video_history_packets: int = 256
    audio_history_packets: int = 64
    remb_interval_s: float = 1.0
    remb_drop_ratio: float = 0.9
    remb_max_age_s: float = 5.0


class UpstreamPort(Protocol):
    """Feedback towards the publisher (RFC 4585 PLI, REMB)."""

    def request_keyframe(self) -> None: ...

    def send_remb(self, bitrate: int) -> None: ...


class Publication:
    """One publisher track: dispatches its RTP to the slots that carry it (or wait for it).

    Muted means the relay does not forward the track's packets at all; on unmute every slot
    carrying it resynchronises (audio: the next packet; video: the next keyframe).
    """

    def __init__(
        self,
        publication_id: str,
        kind: str,
        *,
        config: RelayConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if kind not in ("audio", "video"):
            raise ValueError(f"publication kind must be audio or video, not {kind!r}")
        self.id = publication_id
        self.kind = kind
        self.config = config or RelayConfig()
        self._clock = clock
        self._upstream: UpstreamPort | None = None
        self._slots: list[Slot] = []
        self._muted = False
        self.closed = False
        self.last_sender_report: SenderReport | None = None
        # keyframe state
        self.keyframes_seen = 0
        self.last_keyframe_at: float | None = None
        self.packets_received = 0
        self.last_packet_at: float | None = None
        self._ssrc: int | None = None
        # PLI coalescing
        self.plis_sent = 0
        self._last_pli_at: float | None = None
        self._deferred_pli: asyncio.TimerHandle | None = None
        # REMB aggregation
        self._last_remb: int | None = None
        self._last_remb_at: float | None = None

    def __repr__(self) -> str:
        return f"Publication({self.id!r}, {self.kind})"

    def bind(self, upstream: UpstreamPort) -> None:
        """Connect the feedback path to the publisher."""
        self._upstream = upstream

    @property
    def slots(self) -> tuple[Slot, ...]:
        """The slots that carry this publication or wait for its keyframe."""
        return tuple(self._slots)

    @property
    def muted(self) -> bool:
        return self._muted

    @muted.setter
    def muted(self, value: bool) -> None:
        if value == self._muted:
            return
        self._muted = value
        if not value:
            for slot in tuple(self._slots):
                slot.resync(self)

    def _attach(self, slot: Slot) -> None:
        if slot not in self._slots:
            self._slots.append(slot)

    def _detach(self, slot: Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)

    async def on_rtp(self, packet: RtpPacket, now: float) -> None:
        """One packet from the publisher (after SRTP and RTX unwrap)."""
        if self.closed:
            return
        self.packets_received += 1
        self.last_packet_at = now
        if packet.ssrc != self._ssrc:
            # a new RTP stream (the publisher restarted its track): its numbering has
            # nothing to do with the old one, so every slot starts over on it
            resync = self._ssrc is not None
            self._ssrc = packet.ssrc
            if resync and not self._muted:
                for slot in tuple(self._slots):
                    slot.resync(self)
        if self.kind == "video" and is_vp8_keyframe(packet.payload):
            self.keyframes_seen += 1
            self.last_keyframe_at = now
            if self._deferred_pli is not None:  # this keyframe answers the waiting requests
                self._deferred_pli.cancel()
                self._deferred_pli = None
        if self._muted:
            return
        for slot in tuple(self._slots):
            await slot.on_rtp(self, packet, now)

    def on_sender_report(self, report: SenderReport) -> None:
        """The publisher's latest NTP/RTP mapping, translated per slot for lip sync."""
        self.last_sender_report = report

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe: now, or coalesced into one deferred PLI."""
        if self.closed or self.kind != "video" or self._upstream is None:
            return
        if self._deferred_pli is not None:
            return  # a PLI is already due; it will answer this request too
        now = self._clock()
        wait = 0.0
        if self._last_pli_at is not None:
            wait = self._last_pli_at + self.config.pli_interval_s - now
        if wait <= 0:
            self._send_pli()
        else:
            loop = asyncio.get_running_loop()
            self._deferred_pli = loop.call_later(wait, self._send_deferred_pli)

    def _send_deferred_pli(self) -> None:
        self._deferred_pli = None
        self._send_pli()

    def _send_pli(self) -> None:
        if self._upstream is None or self.closed:
            return
        self._last_pli_at = self._clock()
        self.plis_sent += 1
        self._upstream.request_keyframe()

    def on_remb_changed(self) -> None:
        """Aggregate subscribers' REMB (the minimum) and pass it upstream when it matters."""
        if self._upstream is None or self.closed:
            return
        now = self._clock()
        estimates = [
            slot.remb
            for slot in self._slots
            if slot.source is self
            and slot.remb is not None
            and slot.remb_at is not None
            and now - slot.remb_at <= self.config.remb_max_age_s
        ]
        if not estimates:
            return
        bitrate = min(estimates)
        due = self._last_remb_at is None or now - self._last_remb_at >= self.config.remb_interval_s
        dropped = self._last_remb is not None and bitrate < self._last_remb * (
            self.config.remb_drop_ratio
        )
        if due or dropped:
            self._last_remb = bitrate
            self._last_remb_at = now
            self._upstream.send_remb(bitrate)

    @property
    def remb(self) -> int | None:
        """The last aggregated estimate sent upstream, bits per second."""
        return self._last_remb

    def close(self) -> None:
        """Stop forwarding (idempotent): every slot carrying this publication goes blank."""
        if self.closed:
            return
        self.closed = True
        if self._deferred_pli is not None:
            self._deferred_pli.cancel()
            self._deferred_pli = None
        for slot in tuple(self._slots):
            slot.source_closed(self)
        self._slots.clear()
