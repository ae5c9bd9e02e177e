"""CPU of recording one 1080p wall output with audio, against a transcode in the same run.

Issue 5, "Benchmarks": CPU of recording one 1080p output with audio. The stream is what a wall
output sends: 1080p VP8 at 30 fps and ~5 Mbit/s, encoded once up front with the wall's own
encoder (:class:`bridge.encoder.Vp8Encoder`, default :class:`~bridge.encoder.EncoderConfig`)
from a moving, detailed picture, packetised as the wall does (:func:`bridge.encoder.packetize_vp8`,
1200-byte payloads), plus 48 kbit/s Opus in 20 ms packets.

- ``recorder`` (ours): the packets go into relay publications, through the recorder's relay
  slots (:class:`bridge.slot.Slot`, :class:`bridge.rtp.StreamRewriter`), its ports (RTP parse),
  the VP8 / Opus depacketisers, the queue and the writer thread, which muxes WebM to a file
  (:class:`bridge.recorder.Recorder`) — the whole path the server runs, file close included.
  Fed as fast as it goes (the recorder's arrival clock follows the media's time), so the cost
  per media second is CPU time (``time.process_time``: every thread of the process) divided by
  the media's duration. ``writer`` is the writer thread's own share.
- ``transcode`` (the anchor): the same frames decoded (FFmpeg's VP8 decoder) and re-encoded
  with the wall's encoder settings (libvpx realtime, cpu-used 10, 5 Mbit/s), the audio decoded
  and re-encoded with libopus, muxed to WebM by PyAV — what a recorder that re-encodes would
  pay. One thread for every codec. Its input is the already depacketised frames (no RTP work
  counted), which favours the anchor.

Usage: ``python benchmarks/recording_bench.py [--seconds S] [--repeats N] [--quick]``.
Writes ``benchmarks/results/recording.json``. Medians over the repeats; figures measured on a
shared, noisy 2-core machine: compare within one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.encoder import EncoderConfig, Vp8Encoder, packetize_vp8
from bridge.recorder import Recorder, RecorderConfig
from bridge.relay import Relay
from bridge.rtp import RtpPacket

RESULTS = Path(__file__).resolve().parent / "results" / "recording.json"
WIDTH, HEIGHT, FPS = 1920, 1080, 30
AUDIO_FRAME = 960  # 20 ms at 48 kHz


@dataclass
class Stream:
    """The pre-encoded media: VP8 frames and Opus packets, each with its media time."""

    video: list[tuple[float, bytes, bool]]  # (seconds, frame, keyframe)
    audio: list[tuple[float, bytes]]
    seconds: float

    @property
    def video_bits_per_s(self) -> float:
        return sum(len(f) for _, f, _ in self.video) * 8 / self.seconds


def make_stream(seconds: float) -> Stream:
    """Encode a moving, detailed 1080p picture with the wall's encoder (blurred noise whose
    detail puts the encoder near its 5 Mbit/s target), and a tone in noise."""
    rng = np.random.default_rng(7)
    big = cv2.GaussianBlur(rng.random((HEIGHT + 256, WIDTH + 256), np.float32), (0, 0), 3.4)
    big = (16 + 219 * (big - big.min()) / max(1e-6, float(big.max() - big.min()))).astype(np.uint8)
    chroma = np.full((HEIGHT // 2, WIDTH), 128, np.uint8)
    encoder = Vp8Encoder(EncoderConfig(), FPS)
    video = []
    for i in range(round(seconds * FPS)):
        y = np.ascontiguousarray(big[i % 256 : i % 256 + HEIGHT, (2 * i) % 256 :][:, :WIDTH])
        frame = av.VideoFrame.from_ndarray(np.vstack([y, chroma]), format="yuv420p")
        for data, key in encoder.encode(frame, keyframe=i == 0):
            video.append((i / FPS, data, key))
    opus = av.CodecContext.create("libopus", "w")
    assert isinstance(opus, av.AudioCodecContext)
    opus.sample_rate, opus.layout, opus.format, opus.bit_rate = 48000, "mono", "s16", 48000
    audio = []
    for i in range(round(seconds * 50)):
        n = i * AUDIO_FRAME + np.arange(AUDIO_FRAME)
        wave = 8000 * np.sin(2 * np.pi * 440 * n / 48000) + rng.normal(0, 1500, AUDIO_FRAME)
        frame = av.AudioFrame.from_ndarray(
            wave.astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = 48000, i * AUDIO_FRAME
        frame.time_base = fractions.Fraction(1, 48000)
        for packet in opus.encode(frame):
            audio.append((i * 0.02, bytes(packet)))
    return Stream(video, audio, seconds)


def rtp_events(stream: Stream) -> list[tuple[float, bool, RtpPacket]]:
    """Every RTP packet of both tracks in media-time order (video first at equal times)."""
    events: list[tuple[float, bool, RtpPacket]] = []
    seq = 0
    for index, (t, frame, _) in enumerate(stream.video):
        payloads = packetize_vp8(frame, index, 1200)
        for i, payload in enumerate(payloads):
            packet = RtpPacket(
                96, seq & 0xFFFF, round(t * 90000), 1, payload, i == len(payloads) - 1
            )
            events.append((t, True, packet))
            seq += 1
    for index, (t, data) in enumerate(stream.audio):
        events.append((t, False, RtpPacket(111, index & 0xFFFF, index * AUDIO_FRAME, 2, data)))
    events.sort(key=lambda e: (e[0], not e[1]))
    return events


async def run_recorder(events: list[tuple[float, bool, RtpPacket]], folder: Path) -> dict[str, Any]:
    relay = Relay()
    video = relay.create_publication("wall", "video")
    audio = relay.create_publication("programme-audio", "audio")
    media_now = [0.0]
    recorder = Recorder(
        folder / "ours.webm",
        relay,
        config=RecorderConfig(queue_frames=65536),
        clock=lambda: media_now[0],
    )
    relay.route(recorder.video_slot, video)
    relay.route(recorder.audio_slot, audio)
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    recorder.start()
    for t, is_video, packet in events:
        media_now[0] = t
        await (video if is_video else audio).on_rtp(packet, t)
    result = await recorder.stop()
    cpu = time.process_time() - started_cpu
    wall = time.perf_counter() - started_wall
    stats = recorder.stats
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "writer_cpu_s": stats.write_s,
        "video_frames": result.video_frames,
        "audio_frames": result.audio_frames,
        "dropped": stats.queue_dropped + recorder.vp8.dropped,
        "size": result.size,
        "duration_s": result.duration_s,
    }


def run_transcode(stream: Stream, folder: Path) -> dict[str, Any]:
    started_cpu, started_wall = time.process_time(), time.perf_counter()
    decoder = av.CodecContext.create("vp8", "r")
    decoder.thread_count = 1
    adecoder = av.CodecContext.create("opus", "r")
    assert isinstance(adecoder, av.AudioCodecContext)
    adecoder.sample_rate = 48000
    adecoder.layout = "mono"
    path = folder / "anchor.webm"
    container = av.open(str(path), "w", format="webm")
    out_video = container.add_stream("libvpx", rate=FPS, width=WIDTH, height=HEIGHT)
    cfg = EncoderConfig()
    out_video.codec_context.bit_rate = cfg.bitrate
    out_video.codec_context.thread_count = 1
    out_video.codec_context.options = {
        "deadline": "realtime",
        "cpu-used": str(cfg.cpu_used),
        "lag-in-frames": "0",
        "static-thresh": str(cfg.static_threshold),
    }
    out_audio = container.add_stream("libopus", rate=48000, layout="mono")
    out_audio.codec_context.bit_rate = 48000
    frames = 0
    events: list[tuple[float, bool, bytes]] = [(t, True, f) for t, f, _ in stream.video]
    events += [(t, False, d) for t, d in stream.audio]
    events.sort(key=lambda e: (e[0], not e[1]))
    for t, is_video, data in events:
        if is_video:
            for frame in decoder.decode(av.Packet(data)):
                frame.pts = round(t * FPS)
                frame.time_base = fractions.Fraction(1, FPS)
                frame.pict_type = av.video.frame.PictureType.NONE
                container.mux(out_video.encode(frame))
                frames += 1
        else:
            for aframe in adecoder.decode(av.Packet(data)):
                aframe.pts = None
                container.mux(out_audio.encode(aframe))
    container.mux(out_video.encode(None))
    container.mux(out_audio.encode(None))
    container.close()
    return {
        "cpu_s": time.process_time() - started_cpu,
        "wall_s": time.perf_counter() - started_wall,
        "video_frames": frames,
        "size": path.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="media length (default 6)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each path (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 s of media, 2 repeats, no JSON")
    args = parser.parse_args()
    seconds, repeats = (2.0, 2) if args.quick else (args.seconds, args.repeats)

    print(f"encoding {seconds:g} s of 1080p{FPS} VP8 (the wall's encoder) and Opus ...")
    stream = make_stream(seconds)
    events = rtp_events(stream)
    kbps = stream.video_bits_per_s / 1000
    print(f"  {len(stream.video)} frames, {kbps:.0f} kbit/s video, {len(events)} RTP packets")

    ours: list[dict[str, Any]] = []
    anchor: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for _ in range(repeats):  # alternate, so both see the same load
            ours.append(asyncio.run(run_recorder(events, folder)))
            anchor.append(run_transcode(stream, folder))

    def per_media_s(runs: list[dict[str, Any]], key: str = "cpu_s") -> float:
        return statistics.median(r[key] for r in runs) / seconds

    ours_ms = 1000 * per_media_s(ours)
    writer_ms = 1000 * per_media_s(ours, "writer_cpu_s")
    anchor_ms = 1000 * per_media_s(anchor)
    frames = len(stream.video)
    rows = [
        ("recorder (relay slots → depacketise → WebM)", ours_ms, ours_ms * seconds / frames),
        ("  of which the writer thread (mux + file)", writer_ms, writer_ms * seconds / frames),
        ("transcode (VP8 decode + libvpx encode, Opus)", anchor_ms, anchor_ms * seconds / frames),
    ]
    print(f"\n1080p{FPS} wall output, {kbps:.0f} kbit/s + Opus 48 kbit/s; medians of {repeats}")
    print(f"{'path':<48} {'CPU ms/s':>9} {'% core':>7} {'ms/frame':>9}")
    for name, ms, per_frame in rows:
        print(f"{name:<48} {ms:>9.1f} {ms / 10:>6.2f}% {per_frame:>9.3f}")
    ratio = anchor_ms / ours_ms if ours_ms else float("inf")
    print(f"\ntranscode / recorder: {ratio:.0f}x")
    dropped = max(r["dropped"] for r in ours)
    print(
        f"recorder: {ours[0]['video_frames']} video + {ours[0]['audio_frames']} audio frames "
        f"written, {dropped} dropped, file {ours[0]['size'] / 1e6:.1f} MB"
    )

    if args.quick:
        return
    document = {
        "benchmark": "recording",
        "machine": f"{platform.node()} ({platform.processor() or platform.machine()}), shared",
        "python": platform.python_version(),
        "pyav": av.__version__,
        "command": "python benchmarks/recording_bench.py"
        + (f" --seconds {args.seconds:g}" if args.seconds != 6.0 else "")
        + (f" --repeats {args.repeats}" if args.repeats != 5 else ""),
        "stream": {
            "width": WIDTH,
            "height": HEIGHT,
            "fps": FPS,
            "seconds": seconds,
            "video_kbps": round(kbps),
            "audio_kbps": 48,
            "rtp_packets": len(events),
        },
        "repeats": repeats,
        "recorder_cpu_ms_per_media_s": round(ours_ms, 2),
        "recorder_core_percent": round(ours_ms / 10, 3),
        "recorder_writer_cpu_ms_per_media_s": round(writer_ms, 2),
        "transcode_cpu_ms_per_media_s": round(anchor_ms, 1),
        "transcode_core_percent": round(anchor_ms / 10, 2),
        "transcode_over_recorder": round(ratio, 1),
        "recorder_dropped_frames": dropped,
        "runs": {"recorder": ours, "transcode": anchor},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
