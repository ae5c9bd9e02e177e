"""bridge.rtp with hand-built packets: RFC 3550 headers, RFC 8285 extensions, RFC 7741 VP8."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.rtp import (
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_MID,
    RtpPacket,
    StreamRewriter,
    is_vp8_keyframe,
    parse_rtp,
    parse_vp8_descriptor,
    rewrite_vp8_descriptor,
    seq_newer,
    serialize_rtp,
    wrap_rtx,
)


def vp8_payload(
    *,
    start: bool = True,
    pid: int = 0,
    picture_id: int | None = None,
    bits: int = 15,
    tl0: int | None = None,
    tid: int | None = None,
    keyframe: bool = False,
    body: bytes = b"\x00\x11\x22",
) -> bytes:
    """A VP8 RTP payload: descriptor (RFC 7741 4.2) then a VP8 payload header byte."""
    first = (0x10 if start else 0) | pid
    ext = 0
    tail = b""
    if picture_id is not None:
        ext |= 0x80
        if bits == 15:
            tail += struct.pack("!H", 0x8000 | picture_id)
        else:
            tail += bytes([picture_id & 0x7F])
    if tl0 is not None:
        ext |= 0x40
        tail += bytes([tl0])
    if tid is not None:
        ext |= 0x20
        tail += bytes([tid << 6 | 0x20])
    desc = bytes([first | 0x80, ext]) + tail if ext else bytes([first])
    vp8_header = bytes([0x00 if keyframe else 0x01])  # P bit: 0 = keyframe
    return desc + vp8_header + body


def raw_rtp(
    *,
    pt: int = 96,
    seq: int = 1,
    ts: int = 1000,
    ssrc: int = 0x11223344,
    marker: bool = False,
    ext: bytes | None = None,
    payload: bytes = b"hello",
    padding: int = 0,
    csrc: tuple[int, ...] = (),
) -> bytes:
    first = 0x80 | len(csrc) | (0x10 if ext is not None else 0) | (0x20 if padding else 0)
    data = struct.pack("!BBHII", first, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    data += b"".join(struct.pack("!I", c) for c in csrc)
    if ext is not None:
        data += ext
    data += payload
    if padding:
        data += b"\x00" * (padding - 1) + bytes([padding])
    return data


def test_parse_fixed_header_padding_and_csrc() -> None:
    data = raw_rtp(seq=65535, ts=0xFFFFFFFF, marker=True, padding=4, csrc=(7, 8))
    p = parse_rtp(data, {})
    assert (p.payload_type, p.sequence_number, p.timestamp, p.ssrc) == (
        96,
        65535,
        0xFFFFFFFF,
        0x11223344,
    )
    assert p.marker and p.payload == b"hello" and p.csrc == (7, 8)


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x60\x00",  # shorter than the fixed header
        b"\x40" + b"\x00" * 11,  # version 1
        raw_rtp(csrc=(1,))[:14],  # truncated CSRC
        raw_rtp(ext=b"\xbe\xde\x00\x05\x10\x00", payload=b""),  # extension overrun
        b"\xa0" + raw_rtp(payload=b"ab")[1:-1] + b"\x09",  # padding longer than the packet
    ],
)
def test_parse_rejects_malformed(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_rtp(data, {})


def test_one_byte_extensions_are_remapped_by_uri_and_unknown_ones_stripped() -> None:
    # ids: 1 = mid "0", 3 = audio level, 9 = something we do not know
    block = bytes([0x10]) + b"0" + bytes([0x30, 0x85]) + bytes([0x91]) + b"zz" + b"\x00"
    ext = struct.pack("!HH", 0xBEDE, len(block) // 4) + block
    p = parse_rtp(raw_rtp(ext=ext), {1: EXT_MID, 3: EXT_AUDIO_LEVEL})
    assert p.extensions == {EXT_MID: b"0", EXT_AUDIO_LEVEL: b"\x85"}
    # the subscriber negotiated different ids and no mid
    out = serialize_rtp(p, {EXT_AUDIO_LEVEL: 7, EXT_ABS_SEND_TIME: 2})
    back = parse_rtp(out, {7: EXT_AUDIO_LEVEL, 2: EXT_ABS_SEND_TIME, 1: EXT_MID})
    assert back.extensions == {EXT_AUDIO_LEVEL: b"\x85"}
    assert back.payload == b"hello"
    # nothing negotiated: no extension block at all
    assert serialize_rtp(p, {})[0] & 0x10 == 0


def test_two_byte_extensions_round_trip() -> None:
    long_value = bytes(range(20))  # too long for the one-byte form
    p = RtpPacket(96, 5, 6, 7, b"x", extensions={EXT_MID: long_value})
    data = serialize_rtp(p, {EXT_MID: 20})
    assert struct.unpack_from("!H", data, 12)[0] & 0xFFF0 == 0x1000
    assert parse_rtp(data, {20: EXT_MID}).extensions == {EXT_MID: long_value}


def test_wrap_rtx_prepends_original_sequence_number() -> None:
    block = bytes([0x10]) + b"1" + b"\x00\x00"
    ext = struct.pack("!HH", 0xBEDE, 1) + block
    data = raw_rtp(seq=4242, ts=99, marker=True, ext=ext, payload=b"abc", padding=3)
    rtx = parse_rtp(wrap_rtx(data, 97, 7, 0xABCDEF01), {1: EXT_MID})
    assert (rtx.payload_type, rtx.sequence_number, rtx.ssrc, rtx.timestamp) == (
        97,
        7,
        0xABCDEF01,
        99,
    )
    assert rtx.marker and rtx.extensions == {EXT_MID: b"1"}
    assert rtx.payload == struct.pack("!H", 4242) + b"abc"


def test_seq_newer_wraps() -> None:
    assert seq_newer(1, 0) and seq_newer(0, 65535) and not seq_newer(65535, 0)
    assert not seq_newer(5, 5)


def test_vp8_descriptor_forms() -> None:
    d = parse_vp8_descriptor(vp8_payload(picture_id=0x1234, tl0=9, tid=1))
    assert (d.picture_id, d.picture_id_bits, d.tl0picidx, d.tid, d.layer_sync) == (
        0x1234,
        15,
        9,
        1,
        True,
    )
    assert d.size == 6 and d.start and d.partition_id == 0
    d7 = parse_vp8_descriptor(vp8_payload(picture_id=100, bits=7))
    assert (d7.picture_id, d7.picture_id_bits, d7.size) == (100, 7, 3)
    plain = parse_vp8_descriptor(vp8_payload(start=False, pid=2))
    assert (plain.picture_id, plain.size, plain.start, plain.partition_id) == (None, 1, False, 2)
    with pytest.raises(ValueError):
        parse_vp8_descriptor(b"\x90\x80")  # I bit set, PictureID missing


def test_vp8_keyframe_detection() -> None:
    assert is_vp8_keyframe(vp8_payload(picture_id=3, keyframe=True))
    assert is_vp8_keyframe(vp8_payload(keyframe=True))
    assert not is_vp8_keyframe(vp8_payload(picture_id=3, keyframe=False))  # P=1
    assert not is_vp8_keyframe(vp8_payload(start=False, keyframe=True))  # not a start
    assert not is_vp8_keyframe(vp8_payload(pid=1, keyframe=True))  # not partition 0
    assert not is_vp8_keyframe(b"")
    assert not is_vp8_keyframe(b"\x90\x80")


def test_rewrite_vp8_widens_7_bit_picture_id() -> None:
    payload = vp8_payload(picture_id=5, bits=7, tl0=1, tid=0)
    desc = parse_vp8_descriptor(payload)
    out = rewrite_vp8_descriptor(payload, desc, 0x2345, 77)
    d = parse_vp8_descriptor(out)
    assert (d.picture_id, d.picture_id_bits, d.tl0picidx, d.tid) == (0x2345, 15, 77, 0)
    assert out[d.size :] == payload[desc.size :]


def make_rewriter(vp8: bool = True) -> StreamRewriter:
    return StreamRewriter(
        ssrc=0xCAFE,
        payload_type=120,
        clock_rate=90000,
        vp8=vp8,
        extension_ids={EXT_MID: 4, EXT_ABS_SEND_TIME: 3},
        mid="2",
        initial_sequence=1000,
        initial_timestamp=5000,
        initial_picture_id=10,
    )


def src(
    seq: int, ts: int, pid: int, *, ssrc: int = 1, bits: int = 15, key: bool = False
) -> RtpPacket:
    payload = vp8_payload(picture_id=pid, bits=bits, tl0=pid & 0xFF, keyframe=key)
    return RtpPacket(96, seq, ts, ssrc, payload, marker=True)


EXT_URIS = {4: EXT_MID, 3: EXT_ABS_SEND_TIME}


def test_stream_rewriter_switch_keeps_numbers_continuous() -> None:
    rw = make_rewriter()
    sent = []
    for i in range(3):
        r = rw.rewrite(src(60000 + i, 3000 * i, 32760 + i), now=100.0 + i / 30)
        assert r is not None
        sent.append(parse_rtp(r[1], EXT_URIS))
    assert [p.sequence_number for p in sent] == [1000, 1001, 1002]
    assert [p.timestamp for p in sent] == [5000, 8000, 11000]
    assert all(p.ssrc == 0xCAFE and p.payload_type == 120 for p in sent)
    assert sent[0].extensions[EXT_MID] == b"2" and EXT_ABS_SEND_TIME in sent[0].extensions
    pids = [parse_vp8_descriptor(p.payload).picture_id for p in sent]
    assert pids == [10, 11, 12]

    # switch to a source with wildly different numbers and a 7-bit picture id, 0.1 s later
    now = 100.0 + 2 / 30 + 0.1
    rw.anchor(src(7, 123456, 126, ssrc=2, bits=7, key=True), now)
    out = []
    for i, pid in enumerate([126, 127, 0, 1]):  # the 7-bit id wraps
        r = rw.rewrite(src(7 + i, 123456 + 3000 * i, pid, ssrc=2, bits=7), now + i / 30)
        assert r is not None
        out.append(parse_rtp(r[1], EXT_URIS))
    assert [p.sequence_number for p in out] == [1003, 1004, 1005, 1006]
    assert out[0].timestamp == 11000 + 9000  # 0.1 s at 90 kHz after the last one
    assert [p.timestamp - out[0].timestamp for p in out] == [0, 3000, 6000, 9000]
    descs = [parse_vp8_descriptor(p.payload) for p in out]
    assert [d.picture_id for d in descs] == [13, 14, 15, 16]
    assert all(d.picture_id_bits == 15 for d in descs)
    tl0s = [d.tl0picidx for d in descs]
    assert tl0s[0] == (sent[-1] and parse_vp8_descriptor(sent[-1].payload).tl0picidx + 1)
    # a late packet from before the switch point of the new source is dropped
    assert rw.rewrite(src(6, 120456, 125, ssrc=2, bits=7), now) is None
    # a late retransmission within the source keeps its place
    late = rw.rewrite(src(8, 123456 + 3000, 127, ssrc=2, bits=7), now + 0.2)
    assert late is not None and late[0] == 1004
    assert rw.last_sequence == 1006


def test_stream_rewriter_sequence_wraps_and_audio_passes_payload() -> None:
    rw = StreamRewriter(
        ssrc=1,
        payload_type=111,
        clock_rate=48000,
        vp8=False,
        extension_ids={EXT_AUDIO_LEVEL: 1},
        mid=None,
        initial_sequence=65535,
        initial_timestamp=0xFFFFFF00,
    )
    a = RtpPacket(109, 10, 0, 9, b"opus", extensions={EXT_AUDIO_LEVEL: b"\x90"})
    b = RtpPacket(109, 11, 960, 9, b"opus2")
    r1, r2 = rw.rewrite(a, 1.0), rw.rewrite(b, 1.02)
    assert r1 is not None and r2 is not None
    p1, p2 = parse_rtp(r1[1], {1: EXT_AUDIO_LEVEL}), parse_rtp(r2[1], {1: EXT_AUDIO_LEVEL})
    assert (p1.sequence_number, p2.sequence_number) == (65535, 0)
    assert (p1.timestamp, p2.timestamp) == (0xFFFFFF00, (0xFFFFFF00 + 960) & 0xFFFFFFFF)
    assert p1.payload == b"opus" and p1.extensions == {EXT_AUDIO_LEVEL: b"\x90"}
    assert p2.payload_type == 111
    assert rw.translate_timestamp(960) == p2.timestamp


def test_stream_rewriter_two_byte_path_and_plain_vp8_descriptor() -> None:
    rw = StreamRewriter(
        ssrc=3,
        payload_type=98,
        clock_rate=90000,
        vp8=True,
        extension_ids={EXT_MID: 15, EXT_ABS_SEND_TIME: 2},  # id 15: two-byte form only
        mid="video-main",
        initial_sequence=10,
        initial_timestamp=0,
    )
    plain = vp8_payload(keyframe=True)  # no PictureID: passed through untouched
    r = rw.rewrite(RtpPacket(96, 1, 0, 7, plain, True), 5.0)
    assert r is not None
    back = parse_rtp(r[1], {15: EXT_MID, 2: EXT_ABS_SEND_TIME})
    assert back.payload == plain and back.sequence_number == 10
    assert back.extensions[EXT_MID] == b"video-main"
    assert len(back.extensions[EXT_ABS_SEND_TIME]) == 3
    with_pid = vp8_payload(picture_id=77, tl0=3, tid=1)
    r2 = rw.rewrite(RtpPacket(96, 2, 3000, 7, with_pid, True), 5.03)
    assert r2 is not None
    d = parse_vp8_descriptor(parse_rtp(r2[1], {}).payload)
    assert (d.picture_id, d.tid) == (77, 1)  # counted from the slot's base (0) + 77


@settings(max_examples=200, deadline=None)
@given(
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=3).map(tuple),
    level=st.one_of(st.none(), st.binary(min_size=1, max_size=2)),
    vp8=st.booleans(),
    mid=st.sampled_from([None, "0", "12"]),
    abs_send=st.booleans(),
    payload=st.binary(min_size=1, max_size=64),
)
def test_the_fast_serializer_writes_what_the_general_one_does(
    marker: bool,
    csrc: tuple[int, ...],
    level: bytes | None,
    vp8: bool,
    mid: str | None,
    abs_send: bool,
    payload: bytes,
) -> None:
    ids = {EXT_AUDIO_LEVEL: 5}
    if mid is not None:
        ids[EXT_MID] = 1
    if abs_send:
        ids[EXT_ABS_SEND_TIME] = 3
    uris = {v: k for k, v in ids.items()}
    if vp8:
        payload = bytes([0x90, 0x80, 0x81, 0x23]) + payload  # X, I, 15-bit picture id

    def rewriter() -> StreamRewriter:
        return StreamRewriter(
            ssrc=99, payload_type=100, clock_rate=90000, vp8=vp8, extension_ids=ids,
            mid=mid, initial_sequence=7, initial_timestamp=1000, initial_picture_id=3,
        )  # fmt: skip

    fast, general = rewriter(), rewriter()
    general._one_byte = False  # the general serializer (two-byte form where needed)
    extensions = {EXT_AUDIO_LEVEL: level} if level is not None else {}
    packet = RtpPacket(96, 40, 5000, 7, payload, marker, extensions, csrc)
    out_fast, out_general = fast.rewrite(packet, 1.0), general.rewrite(packet, 1.0)
    assert out_fast is not None and out_general is not None
    assert out_fast[0] == out_general[0]
    a, b = parse_rtp(out_fast[1], uris), parse_rtp(out_general[1], uris)
    assert a == b
    assert a.csrc == csrc and a.marker == marker and a.ssrc == 99
    if mid is not None:
        assert a.extensions[EXT_MID] == mid.encode()
