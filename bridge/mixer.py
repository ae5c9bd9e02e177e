"""Programme audio: a server-side mix of a few Opus publications, encoded once, published.

ARCHITECTURE.md, "bridge/": media is forwarded at RTP level, except where the server makes
media of its own. Programme audio is one such place: while two sites must be heard at once
(the chair and the floor holder), everybody else's one ``main`` audio slot carries their mix.
The mixer is signalling-agnostic (it knows publications, tracks and samples, never floors):
it mixes exactly the sources :meth:`AudioMixer.update` names, like
:class:`~bridge.feeds.Feeds` decodes exactly the wall feeds it is told to.

- Decoding: only the named sources' publications are decoded (:meth:`Peer.set_decode`,
  aiortc's receiver thread); an :class:`AudioReader` moves each decoded frame, down-mixed to
  mono 48 kHz, into that source's bounded :class:`SourceBuffer`. A reader lives as long as
  its track and drains it while its source is not mixed, so a track nobody reads never
  queues frames.
- Clock: a tick every 20 ms takes one frame (960 samples) from each buffer; a source with
  nothing buffered counts as silence, so a source that stalls or vanishes never stalls the
  mix. A buffer that underran waits for ``prefill_ms`` before it plays again (a small jitter
  buffer); one that holds more than ``high_water_ms`` after a tick (a burst after a stall)
  drops its oldest samples down to ``prefill_ms``, and none ever holds more than
  ``buffer_ms`` (bounded latency). Ticks the event loop was late for are made up at once,
  up to ``max_catchup_frames`` (the mix is cheap; a receiver copes with a burst better than
  with a gap); beyond that they are skipped, never queued, and the RTP clock advances past
  them.
- Mix: the frames are summed in int32 and passed through a peak :class:`Limiter` (instant
  attack, gradual release, a final clip as a safety net), so a loud sum never wraps around.
- Encode once with libopus (PyAV), mono, one 20 ms frame per packet (RFC 7587 4.2: one Opus
  packet per RTP packet, 48 kHz RTP clock), own SSRC, sequence numbers and timestamps, the
  marker bit on the first packet of a talkspurt (after a start or an idle spell, RFC 7587
  4.1 / RFC 3551 4.1); an RTCP sender report pair (NTP, RTP) per second for the slots to
  translate (RFC 3550 6.4.1). The packets go into a local :class:`Publication` through
  :meth:`~bridge.publication.Publication.on_rtp`, so the relay's slots rewrite and forward it
  like a microphone.
- Idle: while no slot carries the publication, or no source is named, nothing is mixed or
  encoded.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame

from .publication import Publication, RelayConfig
from .rtp import RtpPacket, SenderReport
from .track_reader import DecodedSource, TrackReader
from .wall import ntp_timestamp

__all__ = [
    "AUDIO_CLOCK_RATE",
    "FRAME_SAMPLES",
    "AudioMixer",
    "AudioReader",
    "Limiter",
    "MixerConfig",
    "MixerStats",
    "SourceBuffer",
    "frame_to_mono",
    "mix_frames",
]

logger = logging.getLogger(__name__)

#: Opus always runs at 48 kHz on the wire (RFC 7587 4.1).
AUDIO_CLOCK_RATE = 48000
#: One 20 ms frame at 48 kHz: the mixer's tick and one RTP packet.
FRAME_SAMPLES = 960
_FRAME_S = FRAME_SAMPLES / AUDIO_CLOCK_RATE
_INT16_MAX = 32767
#: Payload type written into the mixer's own packets; each slot rewrites it to its peer's.
_PAYLOAD_TYPE = 111


@dataclass(frozen=True, slots=True)
class MixerConfig:
    """The programme audio mixer (owned by :mod:`bridge`; the composition root may override).

    - ``output_id``: the publication id (and the local source id the signalling routes to).
    - ``bitrate``: Opus target, bits per second (mono speech; 32–64 kbit/s is transparent).
    - ``application``: libopus tuning, ``voip`` (speech) or ``audio``.
    - ``buffer_ms``: bound on what one source may have buffered; older samples are dropped.
    - ``prefill_ms``: a source that ran dry plays again once this much has arrived.
    - ``high_water_ms``: a source holding more than this after a tick is cut to the prefill.
    - ``max_catchup_frames``: late ticks made up at once; beyond this many, skipped.
    - ``release_per_frame``: how much the limiter's gain may recover per 20 ms frame.
    """

    output_id: str = "programme-audio"
    bitrate: int = 48000
    application: str = "voip"
    buffer_ms: int = 200
    prefill_ms: int = 40
    high_water_ms: int = 120
    max_catchup_frames: int = 5
    release_per_frame: float = 0.05
    sender_report_interval_s: float = 1.0
    idle_when_unwatched: bool = True

    def __post_init__(self) -> None:
        if not self.output_id:
            raise ValueError("output_id must not be empty")
        if not 6000 <= self.bitrate <= 510000:
            raise ValueError(f"bitrate must lie in 6000..510000 (RFC 6716), got {self.bitrate}")
        if self.application not in ("voip", "audio", "lowdelay"):
            raise ValueError(f"application must be voip, audio or lowdelay: {self.application!r}")
        if not 0 <= self.prefill_ms <= self.high_water_ms - 20 <= self.buffer_ms - 20:
            raise ValueError("need 0 <= prefill_ms <= high_water_ms - 20 <= buffer_ms - 20")
        if self.max_catchup_frames < 0:
            raise ValueError("max_catchup_frames must not be negative")
        if not 0 < self.release_per_frame <= 1:
            raise ValueError("release_per_frame must lie in (0, 1]")


@dataclass(slots=True)
class MixerStats:
    """Counters for metrics, tests and the benchmark."""

    ticks: int = 0
    frames: int = 0  # mixed and encoded
    caught_up: int = 0  # frames made late (the loop was late) but sent
    skipped: int = 0  # frames never made: the loop was too late
    idle_ticks: int = 0
    packets: int = 0
    octets: int = 0
    underruns: int = 0  # a named source had nothing for a tick
    limited: int = 0  # frames whose sum the limiter turned down
    errors: int = 0
    work_s: float = 0.0  # CPU seconds mixing and encoding (decoding runs in aiortc's threads)


def frame_to_mono(frame: AudioFrame) -> np.ndarray:
    """A decoded frame's samples as mono int32 in the int16 range (channels averaged).

    Handles packed and planar int16 and float formats, the ones Opus decoders produce.
    """
    if frame.sample_rate != AUDIO_CLOCK_RATE:
        raise ValueError(f"audio must be {AUDIO_CLOCK_RATE} Hz, got {frame.sample_rate}")
    data: np.ndarray = frame.to_ndarray()
    channels = len(frame.layout.channels)
    planar = frame.format.is_planar
    samples = data.reshape(channels, -1) if planar else data.reshape(-1, channels).T
    mono: np.ndarray
    if samples.dtype.kind == "f":
        scaled = samples.mean(axis=0) * _INT16_MAX
        mono = np.clip(scaled, -_INT16_MAX - 1, _INT16_MAX).astype(np.int32)
    elif channels == 1:
        mono = samples[0].astype(np.int32)
    else:
        mono = samples.astype(np.int32).sum(axis=0) // channels
    return mono


class SourceBuffer:
    """One source's decoded samples waiting for the mixer's clock (bounded FIFO).

    :meth:`take` returns exactly ``count`` samples or None (nothing yet: silence). After
    running dry the buffer waits until ``prefill`` samples have arrived, so arrival jitter
    costs one gap, not a gap per packet. More than ``high_water`` samples left after a take
    (a burst after a stall) are cut back to ``prefill``, oldest first: latency stays bounded.
    """

    def __init__(self, capacity: int, prefill: int, high_water: int | None = None) -> None:
        self.capacity = capacity
        self.prefill = prefill
        self.high_water = capacity if high_water is None else high_water
        self._chunks: collections.deque[np.ndarray] = collections.deque()
        self._size = 0
        self._playing = False
        self.dropped = 0  # samples dropped on overflow or above the high water mark

    def __len__(self) -> int:
        return self._size

    def push(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        self._chunks.append(samples)
        self._size += len(samples)
        if self._size > self.capacity:
            self._drop(self._size - self.capacity)

    def _drop(self, count: int) -> None:
        """Drop the oldest ``count`` samples."""
        self.dropped += count
        self._size -= count
        while count:
            head = self._chunks[0]
            if len(head) <= count:
                self._chunks.popleft()
                count -= len(head)
            else:
                self._chunks[0] = head[count:]
                count = 0

    def take(self, count: int) -> np.ndarray | None:
        if not self._playing:
            if self._size < max(self.prefill, count):
                return None
            self._playing = True
        if self._size < count:
            self._playing = False  # ran dry: what is left waits for the prefill
            return None
        parts = []
        needed = count
        while needed:
            head = self._chunks[0]
            if len(head) <= needed:
                parts.append(self._chunks.popleft())
                needed -= len(head)
            else:
                parts.append(head[:needed])
                self._chunks[0] = head[needed:]
                needed = 0
        self._size -= count
        if self._size > self.high_water:
            self._drop(self._size - self.prefill)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def clear(self) -> None:
        self._chunks.clear()
        self._size = 0
        self._playing = False


class Limiter:
    """Peak limiter for an int32 sum: the output never leaves the int16 range.

    Attack is instant (a frame whose peak would clip is scaled down to fit, the gain ramped
    from the previous frame's so the change makes no click); release is gradual
    (``release_per_frame``). A final clip catches the ramp's first samples.
    """

    def __init__(self, release_per_frame: float = 0.05) -> None:
        self.release = release_per_frame
        self.gain = 1.0

    def process(self, mixed: np.ndarray) -> tuple[np.ndarray, bool]:
        """The limited int16 samples, and whether the gain was below 1."""
        peak = int(np.abs(mixed).max()) if len(mixed) else 0
        target = min(1.0, _INT16_MAX / peak) if peak else 1.0
        gain = target if target < self.gain else min(target, self.gain + self.release)
        previous, self.gain = self.gain, gain
        if previous == 1.0 and gain == 1.0:
            out = mixed
        else:
            ramp = np.linspace(previous, gain, len(mixed), dtype=np.float32)
            out = (mixed * ramp).astype(np.int32)
        return np.clip(out, -_INT16_MAX - 1, _INT16_MAX).astype(np.int16), gain < 1.0


def mix_frames(frames: list[np.ndarray], limiter: Limiter) -> tuple[np.ndarray, bool]:
    """Sum equally long int32 frames (silence when there are none) and limit the sum."""
    if not frames:
        return np.zeros(FRAME_SAMPLES, dtype=np.int16), False
    mixed = frames[0].astype(np.int32, copy=True)
    for frame in frames[1:]:
        mixed += frame
    return limiter.process(mixed)


class AudioReader(TrackReader):
    """Reads one remote audio track; pushes its samples into a buffer while active."""

    def __init__(
        self,
        track: MediaStreamTrack,
        buffer: SourceBuffer,
        *,
        on_end: Callable[[AudioReader], None] | None = None,
    ) -> None:
        self.buffer = buffer
        self._error_logged = False
        super().__init__(track, on_end=on_end)

    def take(self, frame: object) -> bool:
        if not isinstance(frame, AudioFrame):
            return False
        try:
            samples = frame_to_mono(frame)
        except ValueError:
            if not self._error_logged:
                self._error_logged = True
                logger.warning("audio track %s: unusable frame %r", self.track.id, frame)
            return False
        self.buffer.push(samples)
        return True


class _Source:
    __slots__ = ("buffer", "peer", "reader")

    def __init__(self, peer: DecodedSource, reader: AudioReader, buffer: SourceBuffer) -> None:
        self.peer = peer
        self.reader = reader
        self.buffer = buffer


class AudioMixer:
    """Mixes the named sources into one published Opus stream (see the module docstring).

    :meth:`update` runs on the event loop; :meth:`start` and :meth:`close` too.
    """

    def __init__(
        self,
        config: MixerConfig | None = None,
        *,
        relay_config: RelayConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or MixerConfig()
        self.id = self.config.output_id
        self.publication = Publication(self.id, "audio", config=relay_config)
        self.stats = MixerStats()
        self._clock = clock
        self._wall_clock = wall_clock
        self._sources: dict[str, _Source] = {}
        self._readers: dict[MediaStreamTrack, AudioReader] = {}
        self._limiter = Limiter(self.config.release_per_frame)
        self._encoder = self._open_encoder()
        self._ssrc = random.getrandbits(32)
        self._sequence = random.getrandbits(16)
        self._timestamp_base = random.getrandbits(32)
        self._frame_index = 0  # 20 ms frames since the start, skipped and idle ones included
        self._last_report_at: float | None = None
        self._idle = True
        self._talkspurt = True  # the next packet starts a talkspurt: marker bit
        self._error_logged = False
        self._task: asyncio.Task[None] | None = None
        self.closed = False

    def __repr__(self) -> str:
        return f"AudioMixer({self.id!r})"

    def _open_encoder(self) -> av.AudioCodecContext:
        encoder = av.CodecContext.create("libopus", "w")
        assert isinstance(encoder, av.AudioCodecContext)
        encoder.sample_rate = AUDIO_CLOCK_RATE
        encoder.layout = "mono"
        encoder.format = "s16"
        encoder.bit_rate = self.config.bitrate
        encoder.time_base = fractions.Fraction(1, AUDIO_CLOCK_RATE)
        encoder.options = {"application": self.config.application, "frame_duration": "20"}
        encoder.open()
        return encoder

    # -- control --------------------------------------------------------------------------

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources mixed now."""
        return tuple(self._sources)

    @property
    def watched(self) -> bool:
        """True while some slot carries the mix."""
        return bool(self.publication.slots)

    def update(self, wanted: Mapping[str, DecodedSource | None]) -> None:
        """Mix exactly the ``wanted`` sources that have a publisher now (None: offline).

        A source that is no longer wanted stops decoding; a new one starts, with an empty
        buffer (it joins the mix once ``prefill_ms`` of it has arrived).
        """
        if self.closed:
            return
        for source_id, source in list(self._sources.items()):
            if wanted.get(source_id) is source.peer and not source.reader.done:
                continue
            self._stop(source_id, source)
        for source_id, peer in wanted.items():
            if peer is not None and source_id not in self._sources:
                self._start(source_id, peer)

    def _start(self, source_id: str, peer: DecodedSource) -> None:
        track = peer.set_decode("audio", True)
        if track is None:
            return  # no microphone published (yet)
        config = self.config
        reader = self._readers.get(track)
        if reader is None or reader.done:
            buffer = SourceBuffer(
                config.buffer_ms * AUDIO_CLOCK_RATE // 1000,
                config.prefill_ms * AUDIO_CLOCK_RATE // 1000,
                config.high_water_ms * AUDIO_CLOCK_RATE // 1000,
            )
            reader = AudioReader(track, buffer, on_end=self._ended)
            self._readers[track] = reader
        reader.buffer.clear()
        reader.active = True
        self._sources[source_id] = _Source(peer, reader, reader.buffer)
        logger.info("programme audio %s: mixing %r", self.id, peer)

    def _stop(self, source_id: str, source: _Source) -> None:
        del self._sources[source_id]
        source.reader.active = False  # keeps draining what was decoded meanwhile
        source.buffer.clear()
        with contextlib.suppress(Exception):  # a closed peer has nothing left to stop
            source.peer.set_decode("audio", False)
        logger.info("programme audio %s: stopped mixing %r", self.id, source.peer)

    def _ended(self, reader: AudioReader) -> None:
        if self._readers.get(reader.track) is reader:
            del self._readers[reader.track]

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        """Start ticking (idempotent)."""
        if self._task is None and not self.closed:
            self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Stop ticking and decoding, close the publication (its slots go blank); idempotent."""
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for source_id, source in list(self._sources.items()):
            self._stop(source_id, source)
        for reader in list(self._readers.values()):
            await reader.close()
        self._readers.clear()
        self.publication.close()

    async def _run(self) -> None:
        next_at = self._clock()
        while True:
            now = self._clock()
            if next_at > now:
                await asyncio.sleep(next_at - now)
                now = self._clock()
            late = int((now - next_at) // _FRAME_S)  # whole frames the loop is behind
            next_at += (late + 1) * _FRAME_S
            count = late + 1
            if late > self.config.max_catchup_frames:  # far behind: skip, never queue
                self.stats.skipped += late
                self._frame_index += late
                count = 1
            self.stats.ticks += 1
            if not self._sources or (self.config.idle_when_unwatched and not self.watched):
                self.stats.idle_ticks += 1
                self._frame_index += count
                self._idle = True
                continue
            if self._idle:  # a new talkspurt: start from fresh buffers, mark its first packet
                self._idle = False
                self._talkspurt = True
                for source in self._sources.values():
                    source.buffer.clear()
            if count > 1:
                self.stats.caught_up += count - 1
                await asyncio.sleep(0)  # let the readers push what arrived meanwhile
            for _ in range(count):
                index = self._frame_index
                self._frame_index += 1
                try:
                    await self._tick(index)
                except Exception:
                    self.stats.errors += 1
                    if not self._error_logged:
                        self._error_logged = True
                        logger.exception("programme audio %s could not make a frame", self.id)
                    continue
                self._error_logged = False

    async def _tick(self, index: int) -> None:
        started = time.thread_time()
        frames = []
        for source in self._sources.values():
            samples = source.buffer.take(FRAME_SAMPLES)
            if samples is None:
                self.stats.underruns += 1
            else:
                frames.append(samples)
        mixed, limited = mix_frames(frames, self._limiter)
        if limited:
            self.stats.limited += 1
        frame = AudioFrame.from_ndarray(mixed.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_CLOCK_RATE
        frame.pts = index * FRAME_SAMPLES
        frame.time_base = fractions.Fraction(1, AUDIO_CLOCK_RATE)
        payloads = [bytes(packet) for packet in self._encoder.encode(frame)]
        self.stats.work_s += time.thread_time() - started
        self.stats.frames += 1
        timestamp = (self._timestamp_base + index * FRAME_SAMPLES) & 0xFFFFFFFF
        wall_now = self._wall_clock()
        if (
            self._last_report_at is None
            or wall_now - self._last_report_at >= self.config.sender_report_interval_s
        ):
            self._last_report_at = wall_now
            self.publication.on_sender_report(SenderReport(ntp_timestamp(wall_now), timestamp))
        for offset, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=_PAYLOAD_TYPE,
                sequence_number=self._sequence,
                timestamp=(timestamp + offset * FRAME_SAMPLES) & 0xFFFFFFFF,
                ssrc=self._ssrc,
                payload=payload,
                marker=self._marker_due(),
            )
            self._sequence = (self._sequence + 1) & 0xFFFF
            self.stats.packets += 1
            self.stats.octets += len(payload)
            await self.publication.on_rtp(packet, wall_now)

    def _marker_due(self) -> bool:
        due, self._talkspurt = self._talkspurt, False
        return due
