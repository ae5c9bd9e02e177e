"""Pure RTP packet rewriting for the relay: no I/O, no clock, no aiortc.

What is implemented, and where it comes from:

- the RTP fixed header, RFC 3550 section 5.1, with serial-number arithmetic on sequence
  numbers and timestamps (RFC 1982);
- RTP header extensions in the one-byte and two-byte forms, RFC 8285 sections 4.2 and 4.3,
  named by URI so that each peer's negotiated ids can differ (``a=extmap``, RFC 8285 section 5);
- RTX retransmission packets, RFC 4588 section 4;
- the VP8 payload descriptor and payload header, RFC 7741 sections 4.2 and 4.3 (PictureID in
  its 7-bit and 15-bit forms, TL0PICIDX, TID/Y/KEYIDX, and keyframe detection);
- :class:`StreamRewriter`, the per-slot output stream: one SSRC, gap-free sequence numbers and
  continuous timestamps and VP8 picture ids across changes of source.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "EXT_ABS_SEND_TIME",
    "EXT_AUDIO_LEVEL",
    "EXT_MID",
    "RtpPacket",
    "SenderReport",
    "StreamRewriter",
    "Vp8Descriptor",
    "abs_send_time",
    "is_vp8_keyframe",
    "parse_rtp",
    "parse_vp8_descriptor",
    "rewrite_vp8_descriptor",
    "seq_newer",
    "serialize_rtp",
    "wrap_rtx",
]

#: RFC 8843 section 15: the media id of the m-line, needed by BUNDLE receivers.
EXT_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
#: http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time: 6.18 fixed-point send time.
EXT_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
#: RFC 6464: client-to-mixer audio level (V bit + level in -dBov).
EXT_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

_HEADER = struct.Struct("!BBHII")
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
_ONE_BYTE_PROFILE = 0xBEDE
_TWO_BYTE_PROFILE = 0x1000  # upper 12 bits; the low 4 "appbits" are ignored


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number ``a`` is after ``b`` (RFC 3550 A.1, RFC 1982)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


def abs_send_time(now: float) -> int:
    """The abs-send-time value (24-bit 6.18 fixed-point NTP seconds) for wall clock ``now``."""
    return int((now + _NTP_EPOCH_OFFSET) * 262144) & 0xFFFFFF


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet, its header extensions named by URI (RFC 3550 5.1, RFC 8285)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    extensions: dict[str, bytes] = field(default_factory=dict)
    csrc: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SenderReport:
    """The NTP and RTP time of one instant, from an RTCP sender report (RFC 3550 6.4.1)."""

    ntp_timestamp: int
    rtp_timestamp: int


def parse_rtp(data: bytes, extension_uris: Mapping[int, str]) -> RtpPacket:
    """Parse an RTP packet; extensions whose id is not in ``extension_uris`` are dropped.

    Raises :class:`ValueError` on a malformed packet.
    """
    if len(data) < 12:
        raise ValueError("RTP packet shorter than its 12-byte fixed header")
    first, m_pt, seq, ts, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError("RTP version is not 2")
    cc = first & 0x0F
    pos = 12
    if len(data) < pos + 4 * cc:
        raise ValueError("RTP packet has a truncated CSRC list")
    csrc = struct.unpack_from(f"!{cc}I", data, pos)
    pos += 4 * cc
    extensions: dict[str, bytes] = {}
    if first & 0x10:
        if len(data) < pos + 4:
            raise ValueError("RTP packet has a truncated extension header")
        profile, words = struct.unpack_from("!HH", data, pos)
        pos += 4
        end = pos + 4 * words
        if len(data) < end:
            raise ValueError("RTP packet has a truncated extension block")
        for ext_id, value in _parse_extensions(profile, data[pos:end]):
            uri = extension_uris.get(ext_id)
            if uri is not None:
                extensions[uri] = value
        pos = end
    end = len(data)
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or padding > end - pos:
            raise ValueError("RTP packet has an invalid padding length")
        end -= padding
    return RtpPacket(
        payload_type=m_pt & 0x7F,
        sequence_number=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload=data[pos:end],
        marker=bool(m_pt & 0x80),
        extensions=extensions,
        csrc=tuple(csrc),
    )


def _parse_extensions(profile: int, block: bytes) -> list[tuple[int, bytes]]:
    """RFC 8285 sections 4.2 (one-byte) and 4.3 (two-byte) elements of one extension block."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    if profile == _ONE_BYTE_PROFILE:
        while pos < len(block):
            byte = block[pos]
            if byte == 0:  # padding
                pos += 1
                continue
            ext_id, length = byte >> 4, (byte & 0x0F) + 1
            if ext_id == 15:  # reserved: stop processing (RFC 8285 4.2)
                break
            pos += 1
            if pos + length > len(block):
                raise ValueError("RTP one-byte header extension overruns its block")
            out.append((ext_id, block[pos : pos + length]))
            pos += length
    elif profile & 0xFFF0 == _TWO_BYTE_PROFILE:
        while pos < len(block):
            ext_id = block[pos]
            if ext_id == 0:
                pos += 1
                continue
            if pos + 2 > len(block):
                raise ValueError("RTP two-byte header extension is truncated")
            length = block[pos + 1]
            pos += 2
            if pos + length > len(block):
                raise ValueError("RTP two-byte header extension overruns its block")
            out.append((ext_id, block[pos : pos + length]))
            pos += length
    return out


def _serialize_extensions(elements: list[tuple[int, bytes]]) -> bytes:
    """One extension block (profile, length, elements, padding) per RFC 8285 4.2/4.3."""
    if all(1 <= i <= 14 and 1 <= len(v) <= 16 for i, v in elements):
        profile = _ONE_BYTE_PROFILE
        body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in elements)
    else:
        profile = _TWO_BYTE_PROFILE
        body = b"".join(bytes([i, len(v)]) + v for i, v in elements)
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", profile, len(body) // 4) + body


def serialize_rtp(packet: RtpPacket, extension_ids: Mapping[str, int]) -> bytes:
    """Serialise ``packet``; only extensions whose URI has an id in ``extension_ids`` are kept.

    Extensions are written in the order of ``extension_ids``.
    """
    elements = [
        (ext_id, packet.extensions[uri])
        for uri, ext_id in extension_ids.items()
        if uri in packet.extensions
    ]
    first = 0x80 | len(packet.csrc)
    ext = b""
    if elements:
        first |= 0x10
        ext = _serialize_extensions(elements)
    header = _HEADER.pack(
        first,
        (0x80 if packet.marker else 0) | packet.payload_type,
        packet.sequence_number,
        packet.timestamp,
        packet.ssrc,
    )
    if packet.csrc:
        header += struct.pack(f"!{len(packet.csrc)}I", *packet.csrc)
    return header + ext + packet.payload


def wrap_rtx(data: bytes, payload_type: int, sequence_number: int, ssrc: int) -> bytes:
    """Turn a serialised RTP packet into its RTX retransmission (RFC 4588 section 4).

    The original sequence number (OSN) is prepended to the payload; the header keeps its
    marker, timestamp, CSRCs and extensions; padding is dropped.
    """
    first, m_pt, osn, ts, _ = _HEADER.unpack_from(data)
    pos = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        words = struct.unpack_from("!H", data, pos + 2)[0]
        pos += 4 + 4 * words
    end = len(data) - (data[-1] if first & 0x20 else 0)
    header = _HEADER.pack(
        first & ~0x20 & 0xFF,
        (m_pt & 0x80) | payload_type,
        sequence_number,
        ts,
        ssrc,
    )
    return header + data[12:pos] + struct.pack("!H", osn) + data[pos:end]


@dataclass(frozen=True, slots=True)
class Vp8Descriptor:
    """The VP8 payload descriptor (RFC 7741 section 4.2).

    ``picture_id_bits`` is 0 (absent), 7 or 15; ``size`` is the descriptor's length in bytes,
    so the VP8 payload (header included) starts at ``payload[size:]``.
    """

    start: bool
    partition_id: int
    non_reference: bool = False
    picture_id: int | None = None
    picture_id_bits: int = 0
    tl0picidx: int | None = None
    tid: int | None = None
    layer_sync: bool = False
    keyidx: int | None = None
    size: int = 1


def parse_vp8_descriptor(payload: bytes) -> Vp8Descriptor:
    """Parse the VP8 payload descriptor at the start of ``payload`` (RFC 7741 4.2).

    Raises :class:`ValueError` when it is truncated.
    """
    if not payload:
        raise ValueError("VP8 payload is empty")
    first = payload[0]
    start = bool(first & 0x10)
    partition_id = first & 0x0F
    non_reference = bool(first & 0x20)
    if not first & 0x80:
        return Vp8Descriptor(start, partition_id, non_reference)
    if len(payload) < 2:
        raise ValueError("VP8 descriptor has truncated extension bits")
    ext = payload[1]
    pos = 2
    picture_id = None
    bits = 0
    tl0 = None
    tid = None
    sync = False
    keyidx = None
    if ext & 0x80:  # I
        if len(payload) < pos + 1:
            raise ValueError("VP8 descriptor has a truncated PictureID")
        if payload[pos] & 0x80:
            if len(payload) < pos + 2:
                raise ValueError("VP8 descriptor has a truncated 15-bit PictureID")
            picture_id = ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
            bits = 15
            pos += 2
        else:
            picture_id = payload[pos]
            bits = 7
            pos += 1
    if ext & 0x40:  # L
        if len(payload) < pos + 1:
            raise ValueError("VP8 descriptor has a truncated TL0PICIDX")
        tl0 = payload[pos]
        pos += 1
    if ext & 0x30:  # T or K
        if len(payload) < pos + 1:
            raise ValueError("VP8 descriptor has a truncated TID/KEYIDX")
        tk = payload[pos]
        if ext & 0x20:
            tid = tk >> 6
            sync = bool(tk & 0x20)
        if ext & 0x10:
            keyidx = tk & 0x1F
        pos += 1
    return Vp8Descriptor(
        start, partition_id, non_reference, picture_id, bits, tl0, tid, sync, keyidx, pos
    )


def is_vp8_keyframe(payload: bytes) -> bool:
    """True for the first packet of a VP8 keyframe.

    RFC 7741 section 4.3: S=1 and PID=0 mean the packet starts the first partition, whose
    first byte carries the P bit (inverse keyframe flag): P=0 is a keyframe.
    """
    if not payload or payload[0] & 0x1F != 0x10:  # S=1 and PID=0, checked before parsing
        return False
    try:
        desc = parse_vp8_descriptor(payload)
    except ValueError:
        return False
    return (
        desc.start
        and desc.partition_id == 0
        and len(payload) > desc.size
        and not payload[desc.size] & 0x01
    )


def rewrite_vp8_descriptor(
    payload: bytes, desc: Vp8Descriptor, picture_id: int | None, tl0picidx: int | None
) -> bytes:
    """Return ``payload`` with its PictureID and TL0PICIDX replaced (RFC 7741 4.2).

    A present PictureID is always written in the 15-bit form, so that a slot fed by a 7-bit
    source and then a 15-bit one shows the receiver one consistent width. Fields absent in
    ``desc`` stay absent.
    """
    if desc.picture_id is None and desc.tl0picidx is None:
        return payload
    out = bytearray(payload[:2])
    if desc.picture_id is not None:
        pid = (desc.picture_id if picture_id is None else picture_id) & 0x7FFF
        out += bytes([0x80 | (pid >> 8), pid & 0xFF])
    if desc.tl0picidx is not None:
        out.append((desc.tl0picidx if tl0picidx is None else tl0picidx) & 0xFF)
    if desc.tid is not None or desc.keyidx is not None:
        out.append(payload[desc.size - 1])
    return bytes(out) + payload[desc.size :]


class StreamRewriter:
    """One outgoing RTP stream (a subscriber slot) fed by successive sources.

    Every packet leaves with the slot's SSRC and payload type and the extensions the
    subscriber negotiated. When the source changes (:meth:`anchor`), the new source's
    sequence numbers continue right after the last one sent (no gap, so the receiver does
    not NACK), its timestamps continue from the last one sent plus the wall-clock time
    elapsed (RFC 3550 5.1: timestamps track sampling time), and VP8 picture ids and
    TL0PICIDX continue by one (RFC 7741 4.2). Within one source, numbers map by constant
    offsets, so reordered and retransmitted packets keep their place.
    """

    def __init__(
        self,
        *,
        ssrc: int,
        payload_type: int,
        clock_rate: int,
        vp8: bool,
        extension_ids: Mapping[str, int],
        mid: str | None,
        initial_sequence: int,
        initial_timestamp: int,
        initial_picture_id: int = 0,
    ) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.vp8 = vp8
        self._ext_ids = dict(extension_ids)
        self._mid = mid.encode() if mid is not None and EXT_MID in self._ext_ids else None
        self._abs_id = self._ext_ids.get(EXT_ABS_SEND_TIME)
        # one-byte form possible (RFC 8285 4.2): precompute elements for the fast path
        self._one_byte = all(1 <= i <= 14 for i in self._ext_ids.values()) and (
            self._mid is None or 1 <= len(self._mid) <= 16
        )
        # fast path: constant elements (mid), the abs-send-time element's first byte, and the
        # extensions copied from the source (audio level), by URI and id
        self._ext_static = b""
        self._abs_element = b""
        self._passthrough: list[tuple[str, int]] = []
        if self._one_byte:
            for uri, ext_id in self._ext_ids.items():
                if uri == EXT_MID:
                    if self._mid is not None:
                        self._ext_static += bytes([(ext_id << 4) | (len(self._mid) - 1)])
                        self._ext_static += self._mid
                elif uri == EXT_ABS_SEND_TIME:
                    self._abs_element = bytes([(ext_id << 4) | 2])
                else:
                    self._passthrough.append((uri, ext_id))
        # the common case, precomputed: nothing copied from the source, so the extension
        # block's layout is fixed (its header and padding), only abs-send-time's value changes
        self._ext_fixed = b""
        self._ext_pad = b""
        fixed = self._ext_static + (self._abs_element + b"\0\0\0" if self._abs_element else b"")
        if fixed:
            pad = -len(fixed) % 4
            words = (len(fixed) + pad) // 4
            self._ext_fixed = struct.pack("!HH", _ONE_BYTE_PROFILE, words) + self._ext_static
            self._ext_fixed += self._abs_element
            self._ext_pad = b"\x00" * pad
        # the last packet sent (highest sequence number)
        self.last_sequence = (initial_sequence - 1) & 0xFFFF
        self.last_timestamp = initial_timestamp & 0xFFFFFFFF
        self.last_time: float | None = None
        self.last_marker = True
        self._last_picture_id = (initial_picture_id - 1) & 0x7FFF
        self._last_tl0 = 0xFF
        # mapping of the current source
        self.anchored = False
        self._base_seq = 0
        self._seq_offset = 0
        self._ts_offset = 0
        self._pid_mod = 0x8000
        self._src_pid_raw = 0  # last source picture id seen, as sent
        self._src_pid = 0  # the same, unwrapped, relative to the anchor
        self._out_pid_base = 0
        self._tl0_offset = 0
        self.packets_sent = 0
        self.octets_sent = 0

    def reset(self) -> None:
        """Forget the current source; the next packet given to :meth:`rewrite` re-anchors."""
        self.anchored = False

    def anchor(self, packet: RtpPacket, now: float) -> None:
        """Make ``packet`` (the first of a new source run) follow the last packet sent."""
        self._base_seq = packet.sequence_number
        self._seq_offset = (self.last_sequence + 1 - packet.sequence_number) & 0xFFFF
        gap = 0
        if self.last_time is not None:
            gap = max(1, round((now - self.last_time) * self.clock_rate))
        self._ts_offset = (self.last_timestamp + gap - packet.timestamp) & 0xFFFFFFFF
        if self.vp8 and packet.payload:
            try:
                desc = parse_vp8_descriptor(packet.payload)
            except ValueError:
                desc = None
            if desc is not None and desc.picture_id is not None:
                self._pid_mod = 1 << desc.picture_id_bits
                self._src_pid_raw = desc.picture_id
                self._src_pid = 0
                self._out_pid_base = (self._last_picture_id + 1) & 0x7FFF
            if desc is not None and desc.tl0picidx is not None:
                self._tl0_offset = (self._last_tl0 + 1 - desc.tl0picidx) & 0xFF
        self.anchored = True

    def translate_timestamp(self, timestamp: int) -> int:
        """The output timestamp for a source timestamp (for sender reports, RFC 3550 6.4.1)."""
        return (timestamp + self._ts_offset) & 0xFFFFFFFF

    def rewrite(self, packet: RtpPacket, now: float) -> tuple[int, bytes] | None:
        """Return ``(sequence_number, bytes)`` to send for a packet of the current source.

        Returns None for a packet older than the current source's first one (it belongs to
        a frame the receiver never saw the start of). Anchors on the first packet.
        """
        if not self.anchored:
            self.anchor(packet, now)
        elif packet.sequence_number != self._base_seq and not seq_newer(
            packet.sequence_number, self._base_seq
        ):
            return None
        seq = (packet.sequence_number + self._seq_offset) & 0xFFFF
        ts = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
        payload = packet.payload
        head = b""
        body_from = 0
        if self.vp8 and payload:
            head, body_from = self._rewrite_vp8(payload)
        if ((seq - self.last_sequence) & 0xFFFF) - 1 < 0x7FFF or self.packets_sent == 0:
            self.last_sequence = seq
            self.last_timestamp = ts
            self.last_time = now
            self.last_marker = packet.marker
        self.packets_sent += 1
        self.octets_sent += len(payload) - body_from + len(head)
        if self._one_byte:
            return seq, self._serialize_fast(packet, seq, ts, head, payload, body_from, now)
        if body_from:
            payload = head + payload[body_from:]
        extensions = dict(packet.extensions)
        if self._mid is not None:
            extensions[EXT_MID] = self._mid
        if self._abs_id is not None:
            extensions[EXT_ABS_SEND_TIME] = abs_send_time(now).to_bytes(3, "big")
        out = RtpPacket(
            payload_type=self.payload_type,
            sequence_number=seq,
            timestamp=ts,
            ssrc=self.ssrc,
            payload=payload,
            marker=packet.marker,
            extensions=extensions,
            csrc=packet.csrc,
        )
        return seq, serialize_rtp(out, self._ext_ids)

    def _serialize_fast(
        self,
        packet: RtpPacket,
        seq: int,
        ts: int,
        head: bytes,
        payload: bytes,
        body_from: int,
        now: float,
    ) -> bytes:
        """:func:`serialize_rtp` specialised for one-byte extensions, copying the payload once."""
        if not packet.csrc and not (self._passthrough and packet.extensions):
            header = _HEADER.pack(
                0x90 if self._ext_fixed else 0x80,
                (0x80 if packet.marker else 0) | self.payload_type,
                seq,
                ts,
                self.ssrc,
            )
            parts: list[bytes | memoryview] = [header]
            if self._ext_fixed:
                parts.append(self._ext_fixed)
                if self._abs_element:
                    parts.append(abs_send_time(now).to_bytes(3, "big"))
                parts.append(self._ext_pad)
            if body_from:
                parts.append(head)
                parts.append(memoryview(payload)[body_from:])
            else:
                parts.append(payload)
            return b"".join(parts)
        body = self._ext_static
        if self._abs_element:
            body += self._abs_element + abs_send_time(now).to_bytes(3, "big")
        if self._passthrough and packet.extensions:
            for uri, ext_id in self._passthrough:
                value = packet.extensions.get(uri)
                if value is not None and 1 <= len(value) <= 16:
                    body += bytes([(ext_id << 4) | (len(value) - 1)]) + value
        first = 0x80 | len(packet.csrc)
        ext = b""
        if body:
            first |= 0x10
            pad = -len(body) % 4
            ext = struct.pack("!HH", _ONE_BYTE_PROFILE, (len(body) + pad) // 4) + body
            if pad:
                ext += b"\x00" * pad
        header = _HEADER.pack(
            first,
            (0x80 if packet.marker else 0) | self.payload_type,
            seq,
            ts,
            self.ssrc,
        )
        if packet.csrc:
            header += struct.pack(f"!{len(packet.csrc)}I", *packet.csrc)
        if body_from:
            return b"".join((header, ext, head, memoryview(payload)[body_from:]))
        return b"".join((header, ext, payload))

    def _rewrite_vp8(self, payload: bytes) -> tuple[bytes, int]:
        """PictureID / TL0PICIDX continuity (RFC 7741 4.2), parsed inline on the hot path.

        Returns the rewritten descriptor and where the rest of ``payload`` starts
        (``(b"", 0)``: nothing to rewrite).
        """
        if not payload[0] & 0x80 or len(payload) < 2:
            return b"", 0  # no extension octet: nothing to rewrite
        ext = payload[1]
        pos = 2
        picture_id = None
        if ext & 0x80:
            if len(payload) < 3:
                return b"", 0
            if payload[2] & 0x80:
                if len(payload) < 4:
                    return b"", 0
                picture_id = ((payload[2] & 0x7F) << 8) | payload[3]
                pos = 4
            else:
                picture_id = payload[2]
                pos = 3
        tl0 = None
        if ext & 0x40:
            if len(payload) <= pos:
                return b"", 0
            tl0 = payload[pos]
            pos += 1
        if ext & 0x30:
            pos += 1
        if len(payload) < pos:
            return b"", 0
        out = bytearray(payload[:2])
        if picture_id is not None:
            # unwrap the source's 7- or 15-bit id relative to the last one seen (RFC 1982)
            mod = self._pid_mod
            delta = (picture_id - self._src_pid_raw) % mod
            if delta >= mod // 2:
                delta -= mod
            unwrapped = self._src_pid + delta
            if delta > 0:
                self._src_pid = unwrapped
                self._src_pid_raw = picture_id
            pid = (self._out_pid_base + unwrapped) & 0x7FFF
            if ((pid - self._last_picture_id) & 0x7FFF) < 0x4000:
                self._last_picture_id = pid
            out.append(0x80 | (pid >> 8))
            out.append(pid & 0xFF)
        if tl0 is not None:
            tl0 = (tl0 + self._tl0_offset) & 0xFF
            if ((tl0 - self._last_tl0) & 0xFF) < 0x80:
                self._last_tl0 = tl0
            out.append(tl0)
        if ext & 0x30:
            out.append(payload[pos - 1])
        return bytes(out), pos
