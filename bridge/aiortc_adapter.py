"""The one module that reaches into aiortc's private internals, pinned to aiortc 1.16.0.

RTP-level forwarding needs four things aiortc does not expose (FIELD-NOTES.md):

- **receive tap** (:class:`ReceiverTap`): every RTP packet of a remote track after SRTP and
  RTX unwrap, without the depacketiser, jitter buffer and decoder thread; sender reports of
  the remote source; upstream PLI, NACK and REMB (RFC 4585 6.2.1 / 6.3.1, REMB draft);
- **raw send** (:class:`SenderPort`): raw RTP bytes written through an ``RTCRtpSender``'s
  DTLS transport with the sender's SSRC — SRTP-protected and handed to the nominated ICE
  pair's socket in one synchronous call (:func:`direct_rtp_sender`) instead of aiortc's chain
  of four coroutines, the relay's hottest path — a larger retransmission history answering NACKs
  (RFC 4585 6.2.1, RTX per RFC 4588 when negotiated), PLI/FIR and REMB fed back to the relay,
  and sender reports whose NTP/RTP pair is translated from the source's (RFC 3550 6.4.1);
- **an idle track** (:class:`SlotTrack`) that keeps the sender's own encoder loop parked;
- :func:`check_aiortc_internals`, which fails loudly when aiortc changes under us.

Everything private used here is listed in :data:`PRIVATE_METHODS`,
:data:`PRIVATE_ATTRIBUTES` and :data:`BEHAVIOURS`; nothing else in the project touches aiortc
internals. The composition root calls :func:`check_aiortc_internals` once at start.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aioice
import aiortc
from aioice.ice import Connection as IceConnection
from aioice.ice import StunProtocol
from aiortc import RTCIceTransport, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)
from aiortc.rtp import RtpPacket as AiortcRtpPacket

from .errors import AiortcInternalsError
from .rtp import EXT_AUDIO_LEVEL, RtpPacket, SenderReport, wrap_rtx

__all__ = [
    "BEHAVIOURS",
    "PINNED_AIORTC_VERSION",
    "PRIVATE_ATTRIBUTES",
    "PRIVATE_METHODS",
    "ReceiverTap",
    "SenderPort",
    "SlotTrack",
    "check_aiortc_internals",
    "direct_rtp_sender",
    "set_stream_id",
]

logger = logging.getLogger(__name__)

PINNED_AIORTC_VERSION = "1.16.0"
PINNED_AIOICE_VERSION = "0.13.0"  # the direct send path reads aioice's nominated pairs

#: (class, method) → parameter names (self first) that the adapter calls or replaces.
PRIVATE_METHODS: dict[tuple[type, str], tuple[str, ...]] = {
    (RTCRtpReceiver, "_handle_rtp_packet"): ("self", "packet", "arrival_time_ms"),
    (RTCRtpReceiver, "_handle_rtcp_packet"): ("self", "packet"),
    (RTCRtpReceiver, "_send_rtcp"): ("self", "packet"),
    (RTCRtpReceiver, "_send_rtcp_nack"): ("self", "media_ssrc", "lost"),
    (RTCRtpReceiver, "_send_rtcp_pli"): ("self", "media_ssrc"),
    (RTCRtpSender, "_handle_rtcp_packet"): ("self", "packet"),
    (RTCRtpSender, "_send_rtcp"): ("self", "packets"),
    (RTCRtpSender, "_send_keyframe"): ("self",),
    (RTCRtpSender, "_run_rtcp"): ("self",),
    (RTCDtlsTransport, "_send_rtp"): ("self", "data"),
    (IceConnection, "sendto"): ("self", "data", "component"),
    (StunProtocol, "send_data"): ("self", "data", "addr"),
    (NackGenerator, "add"): ("self", "packet"),
    (StreamStatistics, "add"): ("self", "packet"),
}

#: class → private instance attributes the adapter reads or writes (set in ``__init__``).
PRIVATE_ATTRIBUTES: dict[type, tuple[str, ...]] = {
    RTCRtpReceiver: (
        "_enabled",
        "__codecs",
        "__rtx_ssrc",
        "__remote_streams",
        "__rtcp_ssrc",
    ),
    RTCRtpSender: (
        "_ssrc",
        "_rtx_ssrc",
        "__rtx_payload_type",
        "__lsr",
        "_stream_id",
    ),
    RTCDtlsTransport: ("_state", "_tx_srtp", "__tx_bytes", "__tx_packets"),
    RTCIceTransport: ("_connection",),
    IceConnection: ("_nominated",),
}


#: (class, method) → a line of its source the adapter relies on.
BEHAVIOURS: dict[tuple[type, str], str] = {
    # SR and SDES go through the replaceable _send_rtcp, after __lsr was set
    (RTCRtpSender, "_run_rtcp"): "await self._send_rtcp(packets)",
    # the encoder loop only pulls from the track (SlotTrack parks it)
    (RTCRtpSender, "_next_encoded_frame"): "data = await self.__track.recv()",
    # RTP reaches receivers through the replaceable per-instance handler
    (RTCDtlsTransport, "_handle_rtp_data"): "await receiver._handle_rtp_packet(packet",
    # what direct_rtp_sender does in one call: protect, then the ICE transport's send ...
    (RTCDtlsTransport, "_send_rtp"): "data = self._tx_srtp.protect(data)",
    (RTCIceTransport, "__init__"): "self._send = self._connection.send",
    # ... which is the nominated pair of component 1, and its protocol's socket
    (IceConnection, "send"): "await self.sendto(data, 1)",
    (IceConnection, "sendto"): "active_pair = self._nominated.get(component)",
    (StunProtocol, "send_data"): "self.transport.sendto(data, addr)",
}


def _mangled(cls: type, name: str) -> str:
    return f"_{cls.__name__}{name}" if name.startswith("__") else name


def check_aiortc_internals() -> None:
    """Verify the installed aiortc is the pinned version with every internal we use.

    Raises :class:`~bridge.errors.AiortcInternalsError` naming what is missing or changed.
    """
    problems: list[str] = []
    if aiortc.__version__ != PINNED_AIORTC_VERSION:
        problems.append(
            f"aiortc {aiortc.__version__} is installed, the relay is pinned to "
            f"{PINNED_AIORTC_VERSION}"
        )
    if aioice.__version__ != PINNED_AIOICE_VERSION:
        problems.append(
            f"aioice {aioice.__version__} is installed, the relay is pinned to "
            f"{PINNED_AIOICE_VERSION}"
        )
    for (cls, name), expected in PRIVATE_METHODS.items():
        method = getattr(cls, name, None)
        if method is None:
            problems.append(f"{cls.__qualname__}.{name} is missing")
            continue
        params = tuple(inspect.signature(method).parameters)
        if params != expected:
            problems.append(
                f"{cls.__qualname__}.{name} has parameters {params}, expected {expected}"
            )
    for (cls, name), needle in BEHAVIOURS.items():
        if needle not in inspect.getsource(getattr(cls, name, lambda: None)):
            problems.append(f"{cls.__qualname__}.{name} no longer does {needle!r}")
    for cls, attrs in PRIVATE_ATTRIBUTES.items():
        source = inspect.getsource(cls.__init__)  # type: ignore[misc]
        for attr in attrs:
            if f"self.{attr} =" not in source and f"self.{attr}:" not in source:
                problems.append(f"{cls.__qualname__}.__init__ no longer sets self.{attr}")
    if problems:
        raise AiortcInternalsError(
            "bridge.aiortc_adapter does not match the installed aiortc: " + "; ".join(problems)
        )


def direct_rtp_sender(dtls: RTCDtlsTransport) -> Callable[[bytes], None]:
    """A synchronous ``dtls._send_rtp`` for RTP: SRTP-protect *data* and write it to the
    nominated ICE pair's socket at once.

    aiortc's own path awaits four coroutines per packet (``RTCDtlsTransport._send_rtp`` →
    ``Connection.send`` → ``Connection.sendto`` → ``StunProtocol.send_data``) that end in the
    same ``transport.sendto``; for the relay, which sends every packet once per subscriber,
    that chain was a large share of the per-subscriber CPU (``benchmarks/relay_bench.py``).
    Raises ConnectionError like aiortc when the transport is not connected or has no pair.
    The transport's byte and packet counters (its ``getStats``) are kept.
    """
    nominated: dict[int, Any] = dtls.transport._connection._nominated
    connected = DtlsState.CONNECTED
    # the nominated pair's socket and address, looked up again only when the pair changes
    # (aioice's ``remote_addr`` builds a new tuple on every call)
    route: list[Any] = [None, None, None]  # pair, transport, address

    def send(data: bytes) -> None:
        if dtls._state is not connected:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        pair = nominated.get(1)
        if pair is not route[0]:
            if pair is None or pair.protocol.transport is None:
                raise ConnectionError("Cannot send data, not connected")
            route[:] = [pair, pair.protocol.transport, pair.remote_addr]
        data = dtls._tx_srtp.protect(data)
        route[1].sendto(data, route[2])
        dtls._RTCDtlsTransport__tx_bytes += len(data)  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]

    return send


def _not_connected(data: bytes) -> None:
    raise ConnectionError("Cannot send encrypted RTP, not connected")


def _require(obj: object, cls: type, attrs: tuple[str, ...]) -> None:
    for attr in attrs:
        if not hasattr(obj, _mangled(cls, attr)):
            raise AiortcInternalsError(f"{cls.__qualname__} instance has no {attr}")


def _log_task_error(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("RTCP send failed: %r", task.exception())


class ReceiverTap:
    """Take a remote track's RTP packets away from aiortc's decoder and hand them to a sink.

    The replaced ``RTCRtpReceiver._handle_rtp_packet`` keeps the receiver's RTCP duties
    (reception statistics for receiver reports, NACK of sequence gaps) and unwraps RTX
    (RFC 4588), but skips depacketising, the jitter buffer and the decoder, so a forwarded
    track costs no decode CPU and queues no frames. With ``decode=True`` (a feed the wall
    composes) aiortc's own path runs as well and the remote track yields frames.
    """

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        *,
        on_rtp: Callable[[RtpPacket, float], Awaitable[None]],
        on_sender_report: Callable[[SenderReport], None] | None = None,
        on_bye: Callable[[], None] | None = None,
        decode: bool = False,
    ) -> None:
        _require(receiver, RTCRtpReceiver, PRIVATE_ATTRIBUTES[RTCRtpReceiver])
        self._receiver = receiver
        self._on_rtp = on_rtp
        self._on_sender_report = on_sender_report
        self._on_bye = on_bye
        self.decode = decode
        self.media_ssrc: int | None = None
        self._nack: NackGenerator | None = None
        self._video = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._original_rtp = receiver._handle_rtp_packet
        self._original_rtcp = receiver._handle_rtcp_packet
        self._installed = False

    def set_decode(self, decode: bool) -> None:
        """Also feed aiortc's decoder (the remote track yields frames) or stop doing so."""
        if decode == self.decode:
            return
        self.decode = decode
        if not decode and self._video:
            # aiortc's own NACK state ran meanwhile: start ours afresh, or the first packet
            # would look like a gap of every packet since decoding began
            self._nack = NackGenerator()

    def install(self, kind: str) -> None:
        """Replace the receiver's RTP and RTCP handlers on this instance (idempotent)."""
        if self._installed:
            return
        self._video = kind == "video"
        self._nack = NackGenerator() if self._video else None
        setattr(self._receiver, "_handle_rtp_packet", self._handle_rtp_packet)  # noqa: B010
        setattr(self._receiver, "_handle_rtcp_packet", self._handle_rtcp_packet)  # noqa: B010
        self._installed = True

    def uninstall(self) -> None:
        """Give the receiver back its own handlers."""
        if self._installed:
            setattr(self._receiver, "_handle_rtp_packet", self._original_rtp)  # noqa: B010
            setattr(self._receiver, "_handle_rtcp_packet", self._original_rtcp)  # noqa: B010
            self._installed = False
        for task in self._tasks:
            task.cancel()

    async def _handle_rtp_packet(self, packet: AiortcRtpPacket, arrival_time_ms: int) -> None:
        receiver = self._receiver
        if not receiver._enabled:
            return
        codecs = receiver._RTCRtpReceiver__codecs  # type: ignore[attr-defined]
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        if self.decode:
            await self._original_rtp(packet, arrival_time_ms)
        else:
            streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
            stats = streams.get(packet.ssrc)
            if stats is None:
                stats = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
            stats.add(packet)
        payload_type = packet.payload_type
        sequence_number = packet.sequence_number
        ssrc = packet.ssrc
        payload = packet.payload
        if is_rtx(codec):
            rtx_ssrc = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]
            original_ssrc = rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(payload) < 2 or apt not in codecs:
                return  # unknown RTX stream or padding-only probe
            payload_type = apt
            sequence_number = (payload[0] << 8) | payload[1]
            ssrc = original_ssrc
            payload = payload[2:]
        if not self.decode and self._nack is not None:
            probe = packet
            if sequence_number != packet.sequence_number:  # unwrapped RTX
                probe = AiortcRtpPacket(sequence_number=sequence_number)
            if self._nack.add(probe):
                await receiver._send_rtcp_nack(ssrc, sorted(self._nack.missing))
        self.media_ssrc = ssrc
        extensions: dict[str, bytes] = {}
        level = packet.extensions.audio_level
        if level is not None:
            extensions[EXT_AUDIO_LEVEL] = bytes([(0x80 if level[0] else 0) | (level[1] & 0x7F)])
        csrc = tuple(packet.csrc) if packet.csrc else ()
        out = RtpPacket(
            payload_type=payload_type,
            sequence_number=sequence_number,
            timestamp=packet.timestamp,
            ssrc=ssrc,
            payload=payload,
            marker=bool(packet.marker),
            extensions=extensions,
            csrc=csrc,
        )
        try:
            await self._on_rtp(out, time.time())
        except Exception:  # never let a relay bug kill aiortc's receive loop
            logger.exception("relay sink failed on an RTP packet")

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        await self._original_rtcp(packet)
        if isinstance(packet, RtcpSrPacket) and self._on_sender_report is not None:
            info = packet.sender_info
            self._on_sender_report(SenderReport(info.ntp_timestamp, info.rtp_timestamp))
        elif isinstance(packet, RtcpByePacket) and self._on_bye is not None:
            self._on_bye()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_task_error)

    def request_keyframe(self) -> None:
        """Send a PLI for the source's media SSRC (RFC 4585 6.3.1); no-op before any packet."""
        if self.media_ssrc is not None:
            self._spawn(self._receiver._send_rtcp_pli(self.media_ssrc))

    def send_remb(self, bitrate: int) -> None:
        """Send REMB (draft-alvestrand-rmcat-remb) for the source's media SSRC."""
        rtcp_ssrc = self._receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        if self.media_ssrc is None or rtcp_ssrc is None:
            return
        packet = RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP,
            ssrc=rtcp_ssrc,
            media_ssrc=0,
            fci=pack_remb_fci(bitrate, [self.media_ssrc]),
        )
        self._spawn(self._receiver._send_rtcp(packet))


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """Announce ``sender``'s track in its own MediaStream (the answer's ``a=msid``).

    aiortc puts every sender of a connection in one stream; call before ``createAnswer``.
    """
    _require(sender, RTCRtpSender, ("_stream_id",))
    setattr(sender, "_stream_id", stream_id)  # noqa: B010


class SenderPort:
    """Write raw RTP through an ``RTCRtpSender`` and take over its RTCP duties.

    * RTP goes out on the sender's DTLS transport (SRTP applied there) with the sender's
      SSRC, so the SSRC announced in the answer stays valid.
    * A ring of the last ``history_size`` packets answers NACKs (RFC 4585 6.2.1), wrapped in
      RTX (RFC 4588) when the subscriber negotiated it. aiortc's own history is 128 packets.
    * PLI and FIR (RFC 4585 6.3.1, RFC 5104 4.3.1) call ``on_keyframe_request``; REMB calls
      ``on_remb``; receiver reports still feed aiortc's RTT statistics.
    * Sender reports carry ``sender_report()``'s NTP/RTP pair (translated from the source's
      own report) and this port's packet and octet counts; without a pair, no SR is sent
      rather than an invented one.
    """

    def __init__(
        self,
        sender: RTCRtpSender,
        *,
        history_size: int,
        on_keyframe_request: Callable[[], None],
        on_remb: Callable[[int], None],
        sender_report: Callable[[], SenderReport | None],
    ) -> None:
        _require(sender, RTCRtpSender, PRIVATE_ATTRIBUTES[RTCRtpSender])
        self._sender = sender
        self._history: list[bytes | None] = [None] * history_size
        self._history_seq: list[int] = [-1] * history_size
        self._on_keyframe_request = on_keyframe_request
        self._on_remb = on_remb
        self._sender_report = sender_report
        self._rtx_sequence = 0
        self._original_rtcp = sender._handle_rtcp_packet
        self._original_send_rtcp = sender._send_rtcp
        self.packets_sent = 0
        self.octets_sent = 0
        self.retransmitted = 0
        self.closed = False
        self._ready = False
        self._send_rtp: Callable[[bytes], None] = _not_connected
        setattr(sender, "_handle_rtcp_packet", self._handle_rtcp_packet)  # noqa: B010
        setattr(sender, "_send_rtcp", self._send_rtcp)  # noqa: B010
        setattr(sender, "_send_keyframe", lambda: None)  # noqa: B010

    @property
    def ssrc(self) -> int:
        return int(self._sender._ssrc)

    @property
    def ready(self) -> bool:
        """True once the subscriber's DTLS transport is connected (SRTP keys exist).

        Checked per packet, so it is cached once true; a transport that later closes makes
        the direct sender raise ConnectionError, which :meth:`send` absorbs.
        """
        if self._ready:
            return not self.closed
        transport = self._sender.transport
        self._ready = not self.closed and transport.state == "connected"
        if self._ready:  # BUNDLE settled the transport before it connected
            self._send_rtp = direct_rtp_sender(transport)
        return self._ready

    async def send(self, sequence_number: int, data: bytes, payload_size: int) -> None:
        """Send one serialised RTP packet and remember it for retransmission."""
        if self.closed:
            return
        pos = sequence_number % len(self._history)
        self._history[pos] = data
        self._history_seq[pos] = sequence_number
        self.packets_sent += 1
        self.octets_sent += payload_size
        try:  # noqa: SIM105 (hot path: no context manager per packet)
            self._send_rtp(data)
        except ConnectionError:
            pass

    async def _retransmit(self, sequence_number: int) -> None:
        pos = sequence_number % len(self._history)
        data = self._history[pos]
        if data is None or self._history_seq[pos] != sequence_number:
            return
        rtx_pt = self._sender._RTCRtpSender__rtx_payload_type  # type: ignore[attr-defined]
        if rtx_pt is not None:
            data = wrap_rtx(data, rtx_pt, self._rtx_sequence, self._sender._rtx_ssrc)
            self._rtx_sequence = (self._rtx_sequence + 1) & 0xFFFF
        self.retransmitted += 1
        try:  # noqa: SIM105 (hot path: no context manager per packet)
            self._send_rtp(data)
        except ConnectionError:
            pass

    async def _handle_rtcp_packet(self, packet: AnyRtcpPacket) -> None:
        try:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                for seq in packet.lost:
                    await self._retransmit(seq)
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (
                RTCP_PSFB_PLI,
                RTCP_PSFB_FIR,
            ):
                self._on_keyframe_request()
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                if self.ssrc in ssrcs:
                    self._on_remb(bitrate)
            else:
                await self._original_rtcp(packet)
        except Exception:
            logger.exception("relay failed on an RTCP packet from a subscriber")

    async def _send_rtcp(self, packets: list[AnyRtcpPacket]) -> None:
        out: list[AnyRtcpPacket] = []
        for packet in packets:
            if isinstance(packet, RtcpSrPacket) and packet.ssrc == self.ssrc:
                report = self._sender_report()
                if report is None:
                    return  # nothing to translate yet: send no report at all
                packet.sender_info = RtcpSenderInfo(
                    ntp_timestamp=report.ntp_timestamp,
                    rtp_timestamp=report.rtp_timestamp,
                    packet_count=self.packets_sent & 0xFFFFFFFF,
                    octet_count=self.octets_sent & 0xFFFFFFFF,
                )
                # aiortc matches the receiver's LSR against this to estimate the RTT
                lsr = (report.ntp_timestamp >> 16) & 0xFFFFFFFF
                setattr(self._sender, "_RTCRtpSender__lsr", lsr)  # noqa: B010
            out.append(packet)
        if self.closed and not any(isinstance(p, RtcpByePacket) for p in out):
            return
        await self._original_send_rtcp(out)

    def close(self) -> None:
        """Stop sending (idempotent); the sender itself is stopped by its peer connection."""
        self.closed = True
        self._history = [None] * len(self._history)


class SlotTrack(MediaStreamTrack):
    """A track that never yields: it parks the sender's encoder loop at zero cost.

    The relay writes the sender's RTP itself; ``RTCRtpSender._run_rtp`` only ever awaits
    :meth:`recv`, which completes when the track is stopped.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended: asyncio.Future[None] = asyncio.get_event_loop().create_future()

    async def recv(self) -> Any:
        await asyncio.shield(self._ended)
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        if not self._ended.done():
            self._ended.set_result(None)
