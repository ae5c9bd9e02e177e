"""Depacketising RTP into whole frames, for the recorder (and any gateway that needs frames).

- VP8, RFC 7741: the payload descriptor (section 4.2) is stripped and the payloads of one
  frame (one RTP timestamp, all partitions in order) are joined until the marker bit (section
  4.1); a frame whose first packet starts partition 0 (S=1, PID=0) with the payload header's P
  bit 0 (section 4.3) is a keyframe. A sequence gap or a malformed packet (truncated
  descriptor, empty payload) drops the frame it hit and every later frame until the next
  keyframe; late and duplicate packets are ignored. A sender that sets no marker bits still
  works: a frame then ends when the next one starts.
- Opus, RFC 7587 section 4.2: one RTP payload is one Opus packet.
- :class:`ReorderBuffer` first puts packets back in sequence order: a retransmission (RFC 4588
  RTX, answered to the receiver's NACK) arrives after the packets that followed the lost one,
  and a recording, unlike a live view, can wait for it instead of dropping frames.
- :class:`Timeline`: one track's RTP timestamps (RFC 3550 5.1, unwrapped) → strictly
  increasing milliseconds of a recording, anchored on arrival.

Pure: no I/O, no clock, no aiortc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .rtp import RtpPacket, parse_vp8_descriptor, seq_newer

__all__ = [
    "MediaFrame",
    "OpusDepacketizer",
    "ReorderBuffer",
    "Timeline",
    "Vp8Depacketizer",
    "vp8_frame_size",
]

#: VP8 keyframe start code (RFC 6386 9.1), after the 3-byte frame tag.
_VP8_START_CODE: Final = b"\x9d\x01\x2a"


class ReorderBuffer:
    """RTP packets back in sequence order (RFC 3550 A.1 serial arithmetic).

    A packet after a missing one waits for it (a retransmission) until the first of the held
    packets has waited ``max_wait`` (on the caller's clock: pure, no timers) or more than
    ``window`` packets are held; then the missing numbers count as lost and the held packets go
    on (the depacketiser sees the gap). Duplicates and packets behind what was already
    released are dropped (``late``). :meth:`flush` releases what is held.
    """

    def __init__(self, window: int, max_wait: float) -> None:
        if window < 0 or max_wait < 0:
            raise ValueError("window and max_wait must not be negative")
        self.window = window
        self.max_wait = max_wait
        self.reordered = 0  # packets that arrived early and waited for a missing one
        self.late = 0
        self.skipped = 0  # sequence numbers given up on
        self._next: int | None = None
        self._held: dict[int, tuple[RtpPacket, float]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def push(self, packet: RtpPacket, now: float) -> list[RtpPacket]:
        seq = packet.sequence_number
        if self._next is None:
            self._next = seq
        if seq == self._next:
            self._next = (seq + 1) & 0xFFFF
            return [packet, *self._release()] if self._held else [packet]
        if not seq_newer(seq, self._next) or seq in self._held:
            self.late += 1
            return []
        self._held[seq] = (packet, now)
        self.reordered += 1
        out: list[RtpPacket] = []
        while self._held and (
            len(self._held) > self.window
            or now - min(at for _, at in self._held.values()) >= self.max_wait
        ):
            self._skip_to_oldest()  # give up on the missing number(s) before the oldest held
            out.extend(self._release())
        return out

    def flush(self) -> list[RtpPacket]:
        """Everything held, in order (the stream ended)."""
        out: list[RtpPacket] = []
        while self._held:
            self._skip_to_oldest()
            out.extend(self._release())
        return out

    def _skip_to_oldest(self) -> None:
        start = self._next
        assert start is not None
        oldest = min(self._held, key=lambda s: (s - start) & 0xFFFF)
        self.skipped += (oldest - start) & 0xFFFF
        self._next = oldest

    def _release(self) -> list[RtpPacket]:
        out = []
        while self._next is not None:
            held = self._held.pop(self._next, None)
            if held is None:
                break
            out.append(held[0])
            self._next = (self._next + 1) & 0xFFFF
        return out


@dataclass(frozen=True, slots=True)
class MediaFrame:
    """One depacketised frame: a whole VP8 frame or one Opus packet, with its RTP timestamp."""

    data: bytes
    timestamp: int
    keyframe: bool


def vp8_frame_size(frame: bytes) -> tuple[int, int] | None:
    """The width and height a VP8 keyframe states (RFC 6386 9.1); None for other frames."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != _VP8_START_CODE:
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


class Vp8Depacketizer:
    """RTP payloads of one VP8 stream → whole frames (RFC 7741), dropping what loss broke.

    :meth:`push` returns the frames a packet completed: usually none or one; two when a sender
    that sets no marker bits starts a frame right after one that ended with a one-packet frame.
    After a loss, frames are dropped until the next keyframe (:attr:`waiting_keyframe`).
    """

    def __init__(self, max_frame_bytes: int = 4_000_000) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.waiting_keyframe = True
        self.frames = 0
        self.keyframes = 0
        self.dropped = 0  # frames thrown away: incomplete, or not decodable without a keyframe
        self.gaps = 0
        self.malformed = 0
        self.late = 0
        self._parts: list[bytes] = []
        self._size = 0
        self._timestamp: int | None = None  # of the frame in progress
        self._keyframe = False
        self._broken = False
        self._next_seq: int | None = None

    def need_keyframe(self) -> None:
        """A frame was lost downstream (a full queue): drop until the next keyframe."""
        self.waiting_keyframe = True

    def push(self, packet: RtpPacket) -> list[MediaFrame]:
        out: list[MediaFrame] = []
        seq = packet.sequence_number
        if self._next_seq is not None and seq != self._next_seq:
            if not seq_newer(seq, self._next_seq):
                self.late += 1  # a duplicate or a packet behind what was already taken
                return out
            self.gaps += 1
            self._lose()
        self._next_seq = (seq + 1) & 0xFFFF
        try:
            desc = parse_vp8_descriptor(packet.payload)
        except ValueError:
            self.malformed += 1
            self._lose()
            return out
        body = packet.payload[desc.size :]
        if desc.start and desc.partition_id == 0:
            if self._timestamp is not None:
                # the previous frame never saw its marker: complete if nothing was lost
                self._finish(out)
            if not body:
                self.malformed += 1
                self._lose()
                return out
            self._timestamp = packet.timestamp
            self._keyframe = not body[0] & 0x01  # P bit: 0 = keyframe (RFC 7741 4.3)
            self._broken = False
            self._parts = [body]
            self._size = len(body)
        elif self._timestamp is None or packet.timestamp != self._timestamp:
            # the middle of a frame whose start we never saw: nothing to build on
            if self._timestamp is not None:
                self._finish(out)
            self._timestamp = packet.timestamp
            self._broken = True
            self._parts, self._size = [], 0
        else:
            self._parts.append(body)
            self._size += len(body)
            if self._size > self.max_frame_bytes:
                self._broken = True
                self._parts, self._size = [], 0
        if packet.marker:
            self._finish(out)
        return out

    def _lose(self) -> None:
        if self._timestamp is not None:
            self._broken = True
        self.waiting_keyframe = True

    def _finish(self, out: list[MediaFrame]) -> None:
        parts, broken, keyframe = self._parts, self._broken, self._keyframe
        timestamp = self._timestamp
        self._parts, self._size, self._timestamp, self._broken = [], 0, None, False
        if broken or not parts or timestamp is None:
            self.dropped += 1
            self.waiting_keyframe = True
            return
        if self.waiting_keyframe and not keyframe:
            self.dropped += 1
            return
        self.waiting_keyframe = False
        self.frames += 1
        self.keyframes += keyframe
        out.append(MediaFrame(b"".join(parts), timestamp, keyframe))


class OpusDepacketizer:
    """RTP payloads of one Opus stream → Opus packets (RFC 7587 4.2: one per payload)."""

    def __init__(self) -> None:
        self.frames = 0
        self.gaps = 0
        self.malformed = 0
        self.late = 0
        self._next_seq: int | None = None

    def push(self, packet: RtpPacket) -> list[MediaFrame]:
        seq = packet.sequence_number
        if self._next_seq is not None and seq != self._next_seq:
            if not seq_newer(seq, self._next_seq):
                self.late += 1
                return []
            self.gaps += 1
        self._next_seq = (seq + 1) & 0xFFFF
        if not packet.payload:
            self.malformed += 1
            return []
        self.frames += 1
        return [MediaFrame(packet.payload, packet.timestamp, True)]


class Timeline:
    """One track's RTP timestamps → strictly increasing milliseconds of the recording.

    Anchored at the arrival of the track's first frame (``arrival_ms``, relative to the
    recording's first frame); then follows the unwrapped RTP clock (RFC 3550 5.1), re-anchoring
    on arrival when the two disagree by more than ``max_drift_ms``.
    """

    def __init__(self, clock_rate: int, max_drift_ms: float) -> None:
        self.clock_rate = clock_rate
        self.max_drift_ms = max_drift_ms
        self.last_pts = -1
        self.reanchored = 0
        self._last_ts: int | None = None
        self._ext = 0
        self._base_ext = 0
        self._base_ms = 0.0

    def pts(self, timestamp: int, arrival_ms: float) -> int:
        if self._last_ts is None:
            self._ext = self._base_ext = timestamp
            self._base_ms = arrival_ms
        else:
            delta = (timestamp - self._last_ts) & 0xFFFFFFFF
            self._ext += delta - (1 << 32) if delta >= 1 << 31 else delta
        self._last_ts = timestamp
        pts = self._base_ms + (self._ext - self._base_ext) * 1000 / self.clock_rate
        if abs(pts - arrival_ms) > self.max_drift_ms:
            self.reanchored += 1
            self._base_ext, self._base_ms, pts = self._ext, arrival_ms, arrival_ms
        whole = max(round(pts), self.last_pts + 1)
        self.last_pts = whole
        return whole
