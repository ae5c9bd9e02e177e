"""Programme audio through the real server: the mix of chair + floor holder, mix-minus.

Terminals are aiortc peers whose microphones play pure tones (chair 440 Hz, floor holder
1000 Hz, the third terminal 2500 Hz); what each one hears in its ``main`` audio slot is
decoded and looked at with an FFT. Plus plain-call tests of the mixer's parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from bridge.mixer import (
    FRAME_SAMPLES,
    Limiter,
    MixerConfig,
    SourceBuffer,
    frame_to_mono,
    mix_frames,
)
from bridge.testkit import wait_for
from signalling.client import Client
from web.app import Huishang

CHAIR, ZHUJI, XIANCUN = "tianhe", "tianhe.zhuji", "tianhe.xiancun"
TONES = {CHAIR: 440.0, ZHUJI: 1000.0, XIANCUN: 2500.0}
RATE = 48000


class ToneTrack(MediaStreamTrack):
    """A microphone playing a pure sine tone, 20 ms mono frames in real time.

    While ``stalled`` it sends nothing (the connection stays up): a publisher gone quiet.
    """

    kind = "audio"

    def __init__(self, frequency: float, amplitude: float = 0.3) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = amplitude
        self.stalled = False
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        while self.stalled and self.readyState == "live":
            await asyncio.sleep(0.02)
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        wait = self._start + self._index * FRAME_SAMPLES / RATE - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        n = self._index * FRAME_SAMPLES + np.arange(FRAME_SAMPLES)
        wave = self.amplitude * 32767 * np.sin(2 * np.pi * self.frequency * n / RATE)
        frame = AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = RATE
        frame.pts = self._index * FRAME_SAMPLES
        frame.time_base = fractions.Fraction(1, RATE)
        self._index += 1
        return frame


def tone_share(samples: np.ndarray, frequency: float) -> float:
    """The share of the signal's energy within 25 Hz of ``frequency``."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1 / RATE)
    total = float(spectrum.sum())
    if total <= 0:
        return 0.0
    return float(spectrum[np.abs(freqs - frequency) <= 25].sum()) / total


@dataclass
class ToneTerminal:
    """An aiortc terminal: tone microphone out, ``main`` programme audio in."""

    site: str
    signalling: Client
    pc: RTCPeerConnection
    tone: ToneTrack
    chunks: list[np.ndarray] = field(default_factory=list)
    received: int = 0  # decoded frames of programme audio so far
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, AudioFrame)
                self.chunks.append(frame_to_mono(frame))
                del self.chunks[:-200]  # keep the last ~4 s
                self.received += 1

    async def listen(self, seconds: float = 0.6) -> np.ndarray:
        """What arrives over the next ``seconds`` of programme audio (after a settle)."""
        await asyncio.sleep(0.5)  # let a switch and the jitter buffers settle
        start = self.received
        frames = round(seconds * RATE / FRAME_SAMPLES)
        await wait_for(lambda: self.received >= start + frames, 15, f"{self.site} audio")
        return np.concatenate(self.chunks[-frames:]).astype(np.float64)

    async def hears(self) -> set[float]:
        """The test tones in what arrives next: > 15 % of the energy each."""
        samples = await self.listen()
        return {f for f in TONES.values() if tone_share(samples, f) > 0.15}

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()
        await self.signalling.close()


async def tone_terminal(app: Huishang, site: str) -> ToneTerminal:
    token = app.token_for(site)  # type: ignore[arg-type]
    assert token is not None
    client = await Client.connect(app.signalling_url, token)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    terminal = ToneTerminal(site, client, pc, ToneTrack(TONES[site]))

    @pc.on("track")
    def _on_track(track: MediaStreamTrack) -> None:
        terminal.tasks.append(asyncio.ensure_future(terminal.consume(track)))

    pc.addTrack(terminal.tone)  # audio sendrecv: microphone out, programme audio in
    await pc.setLocalDescription(await pc.createOffer())
    reply = await client.request({"type": "offer", "sdp": pc.localDescription.sdp})
    assert reply["type"] == "answer" and set(reply["slots"].values()) == {"main"}
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    await wait_for(lambda: pc.connectionState == "connected", 20, f"{site} connected")
    return terminal


async def three(app: Huishang) -> tuple[ToneTerminal, ToneTerminal, ToneTerminal]:
    chair, zhuji, xiancun = [await tone_terminal(app, s) for s in (CHAIR, ZHUJI, XIANCUN)]
    for t in (chair, zhuji, xiancun):
        await wait_for(lambda t=t: t.received > 10 or t is chair, 15, f"{t.site} hears")
    return chair, zhuji, xiancun


async def test_the_mix_is_chair_plus_floor_minus_yourself(server: Huishang) -> None:
    chair, zhuji, xiancun = await three(server)
    mixer = server.media.mixer  # type: ignore[union-attr]
    assert mixer is not None
    try:
        # No floor: everyone hears the chair alone, forwarded (nothing decoded or mixed).
        assert await xiancun.hears() == {TONES[CHAIR]}
        assert await zhuji.hears() == {TONES[CHAIR]}
        assert mixer.sources == ()
        # 珠吉街 has the floor: the others hear the mix; the chair hears only 珠吉街, 珠吉街 only
        # the chair (no one hears themselves); nobody hears 冼村街, who has no floor.
        await chair.signalling.request({"type": "floor", "site": ZHUJI})
        assert await xiancun.hears() == {TONES[CHAIR], TONES[ZHUJI]}
        assert await chair.hears() == {TONES[ZHUJI]}
        assert await zhuji.hears() == {TONES[CHAIR]}
        assert set(mixer.sources) == {CHAIR, ZHUJI}
        assert mixer.stats.packets > 0
        # The floor back to the chair: the chair alone again, and the mixer stops.
        await chair.signalling.request({"type": "floor", "site": None})
        assert await xiancun.hears() == {TONES[CHAIR]}
        assert mixer.sources == ()
    finally:
        for t in (chair, zhuji, xiancun):
            await t.close()


async def test_a_muted_or_stalled_floor_leaves_the_chair(server: Huishang) -> None:
    chair, zhuji, xiancun = await three(server)
    mixer = server.media.mixer  # type: ignore[union-attr]
    assert mixer is not None
    try:
        await chair.signalling.request({"type": "floor", "site": ZHUJI})
        assert await xiancun.hears() == {TONES[CHAIR], TONES[ZHUJI]}
        # Muting the floor holder takes it out of everyone's programme audio.
        await chair.signalling.request({"type": "mute", "site": ZHUJI, "audio": True})
        assert await xiancun.hears() == {TONES[CHAIR]}
        assert mixer.sources == ()
        await chair.signalling.request({"type": "mute", "site": ZHUJI, "audio": False})
        assert await xiancun.hears() == {TONES[CHAIR], TONES[ZHUJI]}
        # The floor holder stops sending (connection up), then vanishes: the chair's audio
        # keeps reaching the others through the mix.
        zhuji.tone.stalled = True
        assert await xiancun.hears() == {TONES[CHAIR]}
        await zhuji.pc.close()
        assert await xiancun.hears() == {TONES[CHAIR]}
    finally:
        for t in (chair, zhuji, xiancun):
            await t.close()


def test_a_loud_sum_is_limited_never_wrapped() -> None:
    loud = np.full(FRAME_SAMPLES, 30000, dtype=np.int32)
    limiter = Limiter(release_per_frame=0.05)
    out, limited = mix_frames([loud, loud], limiter)
    assert limited and out.dtype == np.int16
    assert out.min() > 0  # 60000 would wrap to negative in int16
    assert out.max() == 32767 and out[-1] >= 30000
    # The gain recovers gradually once the sum is quiet again.
    quiet = np.full(FRAME_SAMPLES, 1000, dtype=np.int32)
    out, _ = mix_frames([quiet], limiter)
    assert 500 < out[-1] < 1000
    out, _ = mix_frames([], limiter)
    assert not out.any()


def test_a_source_buffer_is_bounded_and_prefills() -> None:
    with pytest.raises(ValueError):
        MixerConfig(prefill_ms=200)  # a prefill above the high water mark could never play
    buffer = SourceBuffer(capacity=4 * FRAME_SAMPLES, prefill=2 * FRAME_SAMPLES)
    buffer.push(np.arange(FRAME_SAMPLES, dtype=np.int32))
    assert buffer.take(FRAME_SAMPLES) is None  # waits for its prefill
    for i in range(1, 10):
        buffer.push(np.full(FRAME_SAMPLES, i, dtype=np.int32))
    assert len(buffer) == 4 * FRAME_SAMPLES and buffer.dropped == 6 * FRAME_SAMPLES
    taken = buffer.take(FRAME_SAMPLES)
    assert taken is not None and set(taken.tolist()) == {6}  # the oldest were dropped
    for _ in range(3):
        assert buffer.take(FRAME_SAMPLES) is not None
    assert buffer.take(FRAME_SAMPLES) is None  # dry: silence, then prefill again
    buffer.push(np.zeros(FRAME_SAMPLES, dtype=np.int32))
    assert buffer.take(FRAME_SAMPLES) is None
    # A burst (after a stall) above the high water mark is cut back to the prefill.
    buffer = SourceBuffer(
        capacity=10 * FRAME_SAMPLES, prefill=2 * FRAME_SAMPLES, high_water=4 * FRAME_SAMPLES
    )
    for i in range(8):
        buffer.push(np.full(FRAME_SAMPLES, i, dtype=np.int32))
    taken = buffer.take(FRAME_SAMPLES)
    assert taken is not None and taken[0] == 0 and len(buffer) == 2 * FRAME_SAMPLES
    taken = buffer.take(FRAME_SAMPLES)
    assert taken is not None and taken[0] == 6  # the newest are kept


def test_decoded_frames_become_mono_int32() -> None:
    stereo = np.array([[1000, 3000, -2000, -4000]], dtype=np.int16)
    frame = AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
    frame.sample_rate = RATE
    assert frame_to_mono(frame).tolist() == [2000, -3000]
    planar = np.array([[0.5, -0.5], [0.5, -0.5]], dtype=np.float32)
    frame = AudioFrame.from_ndarray(planar, format="fltp", layout="stereo")
    frame.sample_rate = RATE
    assert frame_to_mono(frame).tolist() == [16383, -16383]
