"""Wall output benchmark: 25 live 360p feeds (30 fps each) → one 1080p wall, end to end.

ARCHITECTURE.md budget: "wall output, 25 tiles of 360p → 1080p at 30 fps: decode + compose +
encode ≤ 60 % of one core".

What runs is the product's own path, minus the network (no ICE, DTLS or SRTP; those belong
to the relay's budget):

- each feed is a pre-encoded 360p VP8 clip (libvpx, ~600 kbit/s, a keyframe every 4 s, a
  textured picture with a moving block, like a camera) whose every frame paints its index as
  16 luma blocks; it is replayed at 30 fps as RTP (RFC 7741 packets from
  :func:`bridge.encoder.packetize_vp8`), each feed with its own phase. ``--source-size WxH``
  and ``--source-fps N`` replay the same clip made at another size and rate instead (what
  terminals send when they follow the server's video-limit hint, e.g. ``384x216`` at 30 fps
  or 360p at 15 fps), at the same bits per pixel unless ``--source-kbps`` says otherwise;
  the marks stay readable at any size, so the delay is measured as well;
- per feed, exactly what ``Peer.set_decode("video", True)`` sets up: the RTP goes into the
  feed's :class:`~bridge.publication.Publication`, a :class:`~bridge.decoder.VideoDecoder`
  takes it through a slot of its own (depacketised on the event loop) and decodes it in a
  :class:`~bridge.decode_pool.DecodePool` shared by all feeds, as ``Relay.decode_pool``
  (``--decode-workers``, default 1; case ``bridge-30fps-perfeed``: a thread per feed);
- :class:`bridge.feeds.FeedReader`, attached to the decoder's track, hands each decoded
  frame in the decoding thread to a :class:`bridge.wall.WallOutput` (layout ``25``, labels,
  banner, clock; ``--fit`` and ``--snap-scale`` set its compositor's), which composes and
  encodes (VP8 1080p, its :class:`~bridge.encoder.EncoderConfig` defaults) in its worker
  thread and packetises into its publication.

Cases, run one after the other in the same process (``--rounds`` interleaves them):
``bridge`` = the product's defaults (a layout of 16 sources or more composes at
``WallConfig.large_layout_fps``, 15 fps); ``bridge-30fps`` = the same at 30 fps;
``aiortc-30fps`` = the path before :mod:`bridge.decoder`: per feed, what aiortc's
``RTCRtpReceiver`` does once its decoder runs (depayload + ``JitterBuffer`` on the event loop,
aiortc's ``decoder_worker`` thread with libvpx, a ``RemoteStreamTrack``). The aiortc case
does not feed the publication at all, so its event loop does less than in the product (where
the relay forwards the same packets anyway).

Measured over a steady window after a warm-up: CPU seconds per wall second of the whole
process (``time.process_time``: decode threads (with the hand-off into the compositor),
compose + encode thread, the loop's
depayloading, jitter buffers, feed readers and RTP packetising, and the replay itself) and of
each part (per-thread CPU clocks), as % of one core; the output frame rate; and the delay from
a source frame's last RTP packet reaching the feed to the wall frame that first shows it
leaving the encoder (the output is decoded afterwards, outside the measured window, and each
tile's painted index read back).

``--encoder`` also re-encodes canvases captured from the run with other libvpx settings
(speed ``cpu-used``, threads, bitrate): the evidence behind :class:`EncoderConfig`'s defaults.
``--decoders`` decodes the clip with FFmpeg's native ``vp8`` and with libvpx, 25 decoders side
by side: the evidence behind :class:`~bridge.decoder.DecoderConfig`'s default.

Usage: ``python benchmarks/wall_bench.py [--seconds 10] [--feeds 25] [--cases ...]
[--rounds N] [--encoder] [--decoders] [--scaling 4 9 16] [--source-size 640x360]
[--source-fps 30] [--source-kbps K] [--decode-workers 1] [--fit letterbox] [--snap-scale 0]``
(``--scaling`` also runs those feed counts with the product's defaults, for a table of CPU
per feed). Writes ``benchmarks/results/wall.json`` (``wall_WxH_Nfps.json`` for another
source; ``--out`` to choose), which records the source's size, rate and bitrate. Figures
come from a shared, noisy 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import queue
import statistics
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt
from aiortc.codecs import depayload
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack, decoder_worker
from aiortc.rtp import RtpPacket as AiortcRtpPacket

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.compositor import CompositorConfig, TileSpec, canvas_tile_rects
from bridge.decode_pool import DecodePool
from bridge.decoder import DecoderConfig, VideoDecoder
from bridge.encoder import EncoderConfig, Vp8Encoder, packetize_vp8
from bridge.feeds import FeedReader
from bridge.layout import Rect
from bridge.publication import Publication
from bridge.rtp import RtpPacket
from bridge.scaler import FitMode, plan_tile
from bridge.wall import WallConfig, WallOutput

U8 = npt.NDArray[np.uint8]
CLIP_SECONDS = 4  # one keyframe per loop
WALL_FPS = 30  # the wall's rate in the offline parts (encoder sweep)
RESULTS = Path(__file__).resolve().parent / "results" / "wall.json"
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)


# -- the source clip ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """What each feed sends: ``width`` x ``height`` VP8 at ``fps``, ~``kbps`` kbit/s.

    The default is the budget's case (360p at 30 fps, ~600 kbit/s); other sizes and rates
    default to the same bits per pixel (a terminal that follows the server's video-limit
    hint sends fewer pixels, and its encoder's rate follows its resolution).
    """

    width: int = 640
    height: int = 360
    fps: int = 30
    kbps: int | None = None

    @property
    def bitrate(self) -> int:
        if self.kbps is not None:
            return 1000 * self.kbps
        return round(600_000 * self.width * self.height / (640 * 360) * self.fps / 30)

    @property
    def frames(self) -> int:
        return CLIP_SECONDS * self.fps

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @classmethod
    def parse_size(cls, text: str) -> tuple[int, int]:
        w, _, h = text.lower().partition("x")
        width, height = int(w), int(h)
        if width < 64 or height < 64 or width % 2 or height % 2:
            raise argparse.ArgumentTypeError(f"even WxH of at least 64x64, got {text!r}")
        return width, height


DEFAULT_SOURCE = Source()


def paint_mark(y: U8, value: int) -> None:
    """The frame index as 16 blocks across the middle band (as bridge.testkit.mark_frame)."""
    h, w = y.shape
    block = w // 16
    top, bottom = int(h * 0.35), int(h * 0.65)
    for bit in range(16):
        on = (value >> (15 - bit)) & 1
        y[top:bottom, bit * block : (bit + 1) * block] = 235 if on else 16


def read_mark(y: U8, rect: Rect) -> int:
    area = y[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w]
    block = rect.w // 16
    top, bottom = int(rect.h * 0.35), int(rect.h * 0.65)
    value = 0
    for bit in range(16):
        x0, x1 = bit * block + block // 4, (bit + 1) * block - block // 4
        cell = area[top + 2 : bottom - 2, x0:x1]
        value = (value << 1) | int(cell.mean() > 128)
    return value


@functools.cache
def encode_clip(source: Source = DEFAULT_SOURCE) -> list[tuple[bytes, bool]]:
    """A camera-like clip: static texture, a moving textured block, the index marks (the same
    picture at any size: texture and block scale with the height; the block moves at the same
    speed per second at any frame rate)."""
    w, h, fps = source.width, source.height, source.fps
    scale = h / 360
    rng = np.random.default_rng(11)
    coarse = rng.integers(40, 220, (360 * 3 // 2 // 12 + 1, 640 // 12 + 1)).astype(np.uint8)
    cell = max(1, round(12 * scale))
    texture = cv2.resize(coarse, None, fx=cell, fy=cell, interpolation=cv2.INTER_CUBIC)
    texture = cv2.resize(texture, (max(w, texture.shape[1]), max(h * 3 // 2, texture.shape[0])))
    background: U8 = np.ascontiguousarray(texture[: h * 3 // 2, :w], dtype=np.uint8)
    size = 2 * round(48 * scale)
    blob = cv2.resize(
        rng.integers(0, 256, (12, 12)).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC
    )
    edge = 2 * round(5 * scale)
    # settings pinned, so the clip stays the same whatever the wall encoder's defaults
    clip_config = EncoderConfig(bitrate=source.bitrate, cpu_used=10, keyframe_interval_s=1000)
    encoder = Vp8Encoder(clip_config, fps)
    out: list[tuple[bytes, bool]] = []
    for i in range(source.frames):
        picture = background.copy()
        y = picture[:h]
        x = int((w - size) * (0.5 + 0.5 * np.sin(i * 2 / fps)))
        y[edge : edge + size, x : x + size] = blob
        y[h - edge - size : h - edge, w - size - x : w - x] = blob
        paint_mark(y, i)
        frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
        encoded = encoder.encode(frame, keyframe=i == 0)
        out.extend(encoded)
    assert len(out) == source.frames and out[0][1]
    return out


# -- one feed: replay → a decoder → FeedReader ---------------------------------------------


class Feed:
    """One source replayed at its frame rate as RTP (its own SSRC, sequence and phase)."""

    path = ""

    def __init__(
        self, index: int, source: Source, clip: list[tuple[bytes, bool]], output: WallOutput
    ) -> None:
        self.index = index
        self.source = source
        self.source_id = f"feed{index}"
        self.packets = [packetize_vp8(data, i, 1200) for i, (data, _key) in enumerate(clip)]
        self.sent_at: dict[int, list[float]] = defaultdict(list)  # clip index → send times
        self.sequence = 1000 * index
        self.frames = 0
        self.reader: FeedReader

    def thread_ids(self) -> list[int]:
        raise NotImplementedError

    def decoded(self) -> int:
        """Frames decoded so far (read by the feed reader or not)."""
        return self.reader.frames + self.reader.drained

    async def send(self, payload: bytes, marker: bool, timestamp: int) -> None:
        raise NotImplementedError

    async def inject(self, frame_number: int) -> None:
        clip_index = frame_number % self.source.frames
        timestamp = (frame_number * (90000 // self.source.fps)) & 0xFFFFFFFF
        payloads = self.packets[clip_index]
        for k, payload in enumerate(payloads):
            await self.send(payload, k == len(payloads) - 1, timestamp)
            self.sequence += 1
        self.sent_at[clip_index].append(time.time())
        self.frames += 1

    async def run(self, start: float, phase: float, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            due = start + phase + n / self.source.fps
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.inject(n)
            n += 1

    async def close(self) -> None:
        await self.reader.close()


class AiortcFeed(Feed):
    """The old path (before bridge.decoder): exactly what aiortc's ``RTCRtpReceiver`` does
    once its decoder runs: depayload + ``JitterBuffer`` on the event loop, then aiortc's own
    ``decoder_worker`` (libvpx) in a thread of its own, into a ``RemoteStreamTrack``."""

    path = "aiortc"

    def __init__(
        self, index: int, source: Source, clip: list[tuple[bytes, bool]], output: WallOutput
    ) -> None:
        super().__init__(index, source, clip, output)
        self.jitter = JitterBuffer(capacity=512, is_video=True)
        self.track = RemoteStreamTrack(kind="video")
        self.input: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(
            target=decoder_worker,
            args=(
                asyncio.get_running_loop(),
                self.input,
                self.track._queue,
                threading.Event(),
            ),
            daemon=True,
        )
        self.thread.start()
        self.reader = FeedReader(self.source_id, self.track, [output])

    def thread_ids(self) -> list[int]:
        return [self.thread.native_id] if self.thread.native_id is not None else []

    async def send(self, payload: bytes, marker: bool, timestamp: int) -> None:
        packet = AiortcRtpPacket(
            payload_type=96,
            marker=int(marker),
            sequence_number=self.sequence & 0xFFFF,
            timestamp=timestamp,
            ssrc=1 + self.index,
            payload=payload,
        )
        packet._data = depayload(VP8, packet.payload)  # type: ignore[attr-defined]
        _pli, encoded = self.jitter.add(packet)
        if encoded is not None:
            self.input.put((VP8, encoded))

    async def close(self) -> None:
        self.input.put(None)
        await super().close()


class _Publisher:
    """The replayed publisher's end of the feedback path (keyframes come every 4 s anyway)."""

    def __init__(self) -> None:
        self.plis = 0

    def request_keyframe(self) -> None:
        self.plis += 1

    def send_remb(self, bitrate: int) -> None:
        pass


class BridgeFeed(Feed):
    """The product's path (``Peer.set_decode``): RTP into the feed's
    :class:`~bridge.publication.Publication`, a :class:`~bridge.decoder.VideoDecoder` fed by a
    slot of its own, decoding in a worker of ``pool`` (None: a thread of its own, as before
    :mod:`bridge.decode_pool`), its track read by the FeedReader (attached: frames go to the
    wall in the decoding thread)."""

    path = "bridge"

    def __init__(
        self,
        index: int,
        source: Source,
        clip: list[tuple[bytes, bool]],
        output: WallOutput,
        config: DecoderConfig,
        pool: DecodePool | None,
    ) -> None:
        super().__init__(index, source, clip, output)
        self.publication = Publication(self.source_id, "video")
        self.publication.bind(_Publisher())
        self.decoder = VideoDecoder(self.source_id, config=config, pool=pool)
        self.decoder.start(self.publication)
        self.reader = FeedReader(self.source_id, self.decoder.track, [output])

    def thread_ids(self) -> list[int]:
        return list(self.decoder.thread_ids)

    def decoded(self) -> int:
        return self.decoder.stats.frames_decoded

    async def send(self, payload: bytes, marker: bool, timestamp: int) -> None:
        packet = RtpPacket(
            payload_type=96,
            sequence_number=self.sequence & 0xFFFF,
            timestamp=timestamp,
            ssrc=1 + self.index,
            payload=payload,
            marker=marker,
        )
        await self.publication.on_rtp(packet, time.time())

    async def close(self) -> None:
        self.decoder.close()
        self.publication.close()
        await super().close()


def thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) of one thread of this process, from /proc."""
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# -- the run -----------------------------------------------------------------------------------


async def run(
    feeds_n: int,
    seconds: float,
    warmup: float,
    path: str = "bridge",
    decoder: DecoderConfig | None = None,
    wall: WallConfig | None = None,
    source: Source = DEFAULT_SOURCE,
    decode_workers: int | None = None,
) -> dict[str, Any]:
    print(
        f"encoding the {source.size} source clip ({source.frames} frames at {source.fps} fps)...",
        flush=True,
    )
    clip = encode_clip(source)
    clip_kbps = sum(len(d) for d, _ in clip) * 8 / CLIP_SECONDS / 1000
    kind = "25" if feeds_n <= 25 else "36"
    config = wall or WallConfig(output_id="wall", idle_when_unwatched=False)
    output = WallOutput(config)
    tiles = [TileSpec(f"feed{i}", f"街道{i + 1}") for i in range(feeds_n)]
    output.set_layout(kind, None, tiles)
    output.set_banner("天河区应急指挥中心 视频会商")
    rects = canvas_tile_rects(config.compositor, kind, show_band=True)

    produced: list[tuple[float, bytes]] = []  # (time the frame left the encoder, VP8 frame)
    pending: list[bytes] = []
    original_on_rtp = output.publication.on_rtp
    first_packet_at = [0.0]

    async def tap(packet: RtpPacket, now: float) -> None:
        if not pending:
            first_packet_at[0] = time.time()
        pending.append(packet.payload[4:])
        if packet.marker:
            produced.append((first_packet_at[0], b"".join(pending)))
            pending.clear()
        await original_on_rtp(packet, now)

    output.publication.on_rtp = tap  # type: ignore[method-assign]
    decoder = decoder or DecoderConfig()
    pool = None
    if path != "aiortc" and decode_workers is not None:
        pool = DecodePool(decode_workers, name="decode")
    feeds: list[Feed] = [
        AiortcFeed(i, source, clip, output)
        if path == "aiortc"
        else BridgeFeed(i, source, clip, output, decoder, pool)
        for i in range(feeds_n)
    ]
    loop_id = threading.get_native_id()
    worker_id = await asyncio.get_running_loop().run_in_executor(
        output._executor, threading.get_native_id
    )
    stop = asyncio.Event()
    start = time.monotonic() + 0.2
    tasks = [
        asyncio.ensure_future(
            f.run(start + 2 * f.index / source.fps, f.index / feeds_n / source.fps, stop)
        )
        for f in feeds
    ]
    output.start()
    await asyncio.sleep(warmup + 2 * feeds_n / source.fps)

    decoder_ids = sorted({t for f in feeds for t in f.thread_ids()})
    before: dict[str, float] = {
        "process": time.process_time(),
        "wall": time.monotonic(),
        "decode": sum(thread_cpu(t) for t in decoder_ids),
        "worker": thread_cpu(worker_id),
        "loop": thread_cpu(loop_id),
        "compose": output.stats.compose_s,
        "encode": output.stats.encode_s,
        "frames": output.stats.frames,
        "skipped": output.stats.skipped,
        "feed_frames": sum(f.reader.frames for f in feeds),
        "decoded": sum(f.decoded() for f in feeds),
        "produced": len(produced),
        "tiles_drawn": output.compositor.stats.tiles_drawn,
        "tiles_copied": output.compositor.stats.tiles_copied,
    }
    await asyncio.sleep(seconds)
    after: dict[str, float] = {
        "process": time.process_time(),
        "wall": time.monotonic(),
        "decode": sum(thread_cpu(t) for t in decoder_ids),
        "worker": thread_cpu(worker_id),
        "loop": thread_cpu(loop_id),
        "compose": output.stats.compose_s,
        "encode": output.stats.encode_s,
        "frames": output.stats.frames,
        "skipped": output.stats.skipped,
        "feed_frames": sum(f.reader.frames for f in feeds),
        "decoded": sum(f.decoded() for f in feeds),
        "produced": len(produced),
        "tiles_drawn": output.compositor.stats.tiles_drawn,
        "tiles_copied": output.compositor.stats.tiles_copied,
    }
    stop.set()
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks, return_exceptions=True)
    for f in feeds:
        await f.close()
    if pool is not None:
        pool.close()
    await output.close()

    elapsed = after["wall"] - before["wall"]

    def pct(key: str) -> float:
        return round(100 * (after[key] - before[key]) / elapsed, 1)

    first, last = int(before["produced"]), int(after["produced"])
    window = produced[first:last]
    delays = measure_delays(produced, first, last, feeds, rects, source, config.compositor)
    threads = "a thread per feed" if pool is None else f"{pool.workers} shared"
    result: dict[str, Any] = {
        "feeds": feeds_n,
        "decode_path": path if path == "aiortc" else f"bridge ({decoder.codec}, {threads})",
        "decode_threads": len(decoder_ids),
        "source": f"{source.size}@{source.fps} VP8 {clip_kbps:.0f} kbit/s",
        "source_size": source.size,
        "source_fps": source.fps,
        "source_kbps": round(clip_kbps),
        "canvas": f"{config.compositor.width}x{config.compositor.height}",
        "fit": config.compositor.fit.value,
        "snap_scale": config.compositor.snap_scale,
        "crop_tolerance": config.compositor.crop_tolerance,
        "layout": kind,
        "encoder": {
            "bitrate": config.encoder.bitrate,
            "cpu_used": config.encoder.cpu_used,
            "threads": config.encoder.threads,
        },
        "seconds": round(elapsed, 2),
        "output_fps": round((after["frames"] - before["frames"]) / elapsed, 1),
        "skipped_ticks": after["skipped"] - before["skipped"],
        "frames_dropped_before_compose": sum(
            f.decoder.stats.frames_dropped for f in feeds if isinstance(f, BridgeFeed)
        ),
        "decoded_fps_per_feed": round(
            (after["feed_frames"] - before["feed_frames"]) / elapsed / feeds_n, 1
        ),
        "output_kbps": round(sum(len(d) for _, d in window) * 8 / elapsed / 1000),
        "cpu_total_pct": pct("process"),
        "cpu_decode_pct": pct("decode"),
        "cpu_compose_pct": pct("compose"),
        "cpu_encode_pct": pct("encode"),
        "cpu_worker_thread_pct": pct("worker"),
        "cpu_event_loop_pct": pct("loop"),
        **delays,
    }
    result["cpu_decode_compose_encode_pct"] = round(
        result["cpu_decode_pct"] + result["cpu_compose_pct"] + result["cpu_encode_pct"], 1
    )
    # Per-frame costs, and the budget figure at the nominal rates: on a loaded machine the
    # output may fall behind its rate, which would make the plain percentages look smaller.
    decoded = (after["decoded"] - before["decoded"]) or 1
    frames = (after["frames"] - before["frames"]) or 1
    target_fps = config.fps_for(feeds_n)
    decode_ms = 1000 * (after["decode"] - before["decode"]) / decoded
    compose_ms = 1000 * (after["compose"] - before["compose"]) / frames
    encode_ms = 1000 * (after["encode"] - before["encode"]) / frames
    result |= {
        "target_fps": target_fps,
        "tiles_drawn_per_frame": round((after["tiles_drawn"] - before["tiles_drawn"]) / frames, 1),
        "tiles_copied_per_frame": round(
            (after["tiles_copied"] - before["tiles_copied"]) / frames, 1
        ),
        "decode_ms_per_frame": round(decode_ms, 3),
        "compose_ms_per_frame": round(compose_ms, 2),
        "encode_ms_per_frame": round(encode_ms, 2),
        "cpu_at_nominal_rates_pct": round(
            (decode_ms * feeds_n * source.fps + (compose_ms + encode_ms) * target_fps) / 10, 1
        ),
    }
    return result


def measure_delays(
    produced: list[tuple[float, bytes]],
    first: int,
    last: int,
    feeds: list[Feed],
    rects: tuple[Rect, ...],
    source: Source,
    compositor: CompositorConfig,
) -> dict[str, Any]:
    """Decode the output (from its first keyframe) and find, per tile of the frames in
    ``produced[first:last]``, when the source frame it shows was sent."""
    decoder = av.CodecContext.create("libvpx", "r")
    delays: list[float] = []
    unreadable = 0
    options = {
        "snap": compositor.snap_scale,
        "copy_tolerance": compositor.copy_tolerance,
        "crop_tolerance": compositor.crop_tolerance,
    }
    boxes = [
        plan_tile(r, source.width, source.height, compositor.fit, **options).dst for r in rects
    ]
    seen: dict[tuple[int, int], float] = {}
    for number, (produced_at, data) in enumerate(produced[:last]):
        frames = decoder.decode(av.Packet(data))
        if number < first:
            continue
        for frame in frames:
            plane = frame.planes[0]
            y = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)
            for feed, box in zip(feeds, boxes, strict=False):
                mark = read_mark(y, box)
                if mark >= source.frames:
                    unreadable += 1
                    continue
                key = (feed.index, mark)
                sent = [t for t in feed.sent_at.get(mark, []) if t <= produced_at]
                if not sent:
                    unreadable += 1
                    continue
                sent_at = max(sent)
                if seen.get(key) == sent_at:
                    continue  # the same source frame shown again (no newer one yet)
                seen[key] = sent_at
                delays.append(produced_at - sent_at)
    if not delays:
        return {"delay_ms_median": None, "delay_ms_p95": None, "delay_samples": 0}
    delays.sort()
    return {
        "delay_ms_median": round(1000 * statistics.median(delays), 1),
        "delay_ms_p95": round(1000 * delays[int(0.95 * (len(delays) - 1))], 1),
        "delay_ms_max": round(1000 * delays[-1], 1),
        "delay_samples": len(delays),
        "unreadable_tiles": unreadable,
    }


def wall_canvases(feeds_n: int, count: int, source: Source = DEFAULT_SOURCE) -> list[U8]:
    """``count`` wall canvases composed offline from the decoded clip (each feed at its own
    phase), as the live run composes them (at 30 fps)."""
    clip = encode_clip(source)
    decoder = av.CodecContext.create("libvpx", "r")
    pictures: list[U8] = []
    for data, _key in clip:
        for frame in decoder.decode(av.Packet(data)):
            pictures.append(np.asarray(frame.to_ndarray(), dtype=np.uint8))
    kind = "25" if feeds_n <= 25 else "36"
    config = WallConfig(idle_when_unwatched=False)
    output = WallOutput(config)
    output.set_layout(kind, None, [TileSpec(f"feed{i}", f"街道{i + 1}") for i in range(feeds_n)])
    output.set_banner("天河区应急指挥中心 视频会商")
    canvases = []
    h, w = source.height, source.width
    for n in range(count):
        for i in range(feeds_n):
            picture = pictures[(n * source.fps // WALL_FPS + 7 * i) % len(pictures)]
            planes = (
                picture[:h],
                picture[h : h + h // 4].reshape(h // 2, w // 2),
                picture[h + h // 4 :].reshape(h // 2, w // 2),
            )
            output.push(f"feed{i}", planes, n / WALL_FPS)
        frame = output.compositor.compose(n / WALL_FPS, f"2026-11-29 09:00:{n // WALL_FPS:02d}")
        canvases.append(np.array(frame.to_ndarray(), dtype=np.uint8))
    return canvases


def encoder_sweep(feeds_n: int, source: Source = DEFAULT_SOURCE) -> list[dict[str, Any]]:
    """Encode the same wall canvases with several libvpx settings (one run, interleaved
    rounds, medians), so the settings compare under the same load."""
    canvases = wall_canvases(feeds_n, 60, source)
    settings = [
        (6, 1, 5_000_000),
        (10, 1, 5_000_000),
        (16, 1, 5_000_000),
        (-16, 1, 5_000_000),
        (-12, 1, 5_000_000),
        (-8, 1, 5_000_000),
        (-16, 2, 5_000_000),
        (-16, 1, 3_000_000),
    ]
    samples: dict[tuple[int, int, int], list[float]] = defaultdict(list)
    sizes: dict[tuple[int, int, int], int] = defaultdict(int)
    for _round in range(2):
        for setting in settings:
            cpu_used, threads, bitrate = setting
            config = EncoderConfig(bitrate=bitrate, cpu_used=cpu_used, threads=threads)
            encoder = Vp8Encoder(config, WALL_FPS)
            sizes[setting] = 0
            for i, canvas in enumerate(canvases):
                frame = av.VideoFrame.from_ndarray(canvas, format="yuv420p")
                started = time.process_time()
                encoded = encoder.encode(frame, keyframe=i == 0)
                spent = time.process_time() - started
                if i >= 10:  # past the keyframe and the rate controller's start
                    samples[setting].append(spent)
                    sizes[setting] += sum(len(d) for d, _ in encoded)
    rows = []
    for setting in settings:
        cpu_used, threads, bitrate = setting
        rows.append(
            {
                "cpu_used": cpu_used,
                "threads": threads,
                "bitrate": bitrate,
                "cpu_ms_per_frame": round(1000 * statistics.median(samples[setting]), 2),
                "kbps": round(sizes[setting] * 8 / ((len(canvases) - 10) / WALL_FPS) / 1000),
            }
        )
    return rows


def decoder_sweep(
    feeds_n: int, rounds: int = 3, source: Source = DEFAULT_SOURCE
) -> list[dict[str, Any]]:
    """CPU ms per decoded frame of each FFmpeg decoder, with ``feeds_n`` decoders of the clip
    running side by side (each at its own phase, round robin, as on the wall: their
    reference frames compete for the caches), one thread, interleaved rounds, medians."""
    clip = encode_clip(source)
    samples: dict[str, list[float]] = defaultdict(list)
    for _round in range(rounds):
        for name in ("vp8", "libvpx"):
            codecs = []
            for _ in range(feeds_n):
                codec = av.CodecContext.create(name, "r")
                codec.thread_count = 1
                codecs.append(codec)
            frames = 0
            started = time.thread_time()
            for n in range(source.frames):
                for codec in codecs:
                    frames += len(codec.decode(av.Packet(clip[n][0])))
            samples[name].append(1000 * (time.thread_time() - started) / frames)
    return [
        {
            "decoder": name,
            "feeds": feeds_n,
            "cpu_ms_per_frame": round(statistics.median(values), 3),
            "all_rounds": [round(v, 3) for v in values],
        }
        for name, values in samples.items()
    ]


SHARED = 0  # in CASES: the decoders share one DecodePool of --decode-workers threads
CASES: dict[str, tuple[str, int | None, WallConfig]] = {
    # name: (decode path, decode threads (None: one per feed), wall config); product first
    "bridge": ("bridge", SHARED, WallConfig(output_id="wall", idle_when_unwatched=False)),
    "bridge-30fps": (
        "bridge",
        SHARED,
        WallConfig(output_id="wall", idle_when_unwatched=False, large_layout_fps=None),
    ),
    "aiortc-30fps": (
        "aiortc",
        None,
        WallConfig(output_id="wall", idle_when_unwatched=False, large_layout_fps=None),
    ),
    "bridge-30fps-perfeed": (
        "bridge",
        None,
        WallConfig(output_id="wall", idle_when_unwatched=False, large_layout_fps=None),
    ),
}
DEFAULT_CASES = ("bridge", "bridge-30fps", "aiortc-30fps")

ROWS = (
    ("output frame rate: target (fps)", "target_fps"),
    ("output frame rate: reached (fps)", "output_fps"),
    ("decoded frames per feed (fps)", "decoded_fps_per_feed"),
    ("output bitrate (kbit/s)", "output_kbps"),
    ("CPU decode (% of one core)", "cpu_decode_pct"),
    ("CPU compose (% of one core)", "cpu_compose_pct"),
    ("CPU encode (% of one core)", "cpu_encode_pct"),
    ("CPU decode + compose + encode (budget 60)", "cpu_decode_compose_encode_pct"),
    ("decode ms per feed frame", "decode_ms_per_frame"),
    ("compose ms per wall frame", "compose_ms_per_frame"),
    ("tiles redrawn per wall frame", "tiles_drawn_per_frame"),
    ("tiles copied from the previous frame", "tiles_copied_per_frame"),
    ("encode ms per wall frame", "encode_ms_per_frame"),
    ("the same at the nominal rates (budget 60)", "cpu_at_nominal_rates_pct"),
    ("CPU event loop (RTP, depacketising, feeds)", "cpu_event_loop_pct"),
    ("CPU whole process (% of one core)", "cpu_total_pct"),
    ("decoding threads", "decode_threads"),
    ("delay source -> wall frame, median ms", "delay_ms_median"),
    ("delay p95 ms", "delay_ms_p95"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--feeds", type=int, default=25)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=sorted(CASES),
        default=list(DEFAULT_CASES),
        help=f"which cases to run, in this order (default: {' '.join(DEFAULT_CASES)})",
    )
    parser.add_argument(
        "--source-size",
        type=Source.parse_size,
        default=(DEFAULT_SOURCE.width, DEFAULT_SOURCE.height),
        help="each feed's picture size, WxH (default 640x360, the budget's case)",
    )
    parser.add_argument(
        "--source-fps", type=int, default=DEFAULT_SOURCE.fps, help="each feed's frame rate"
    )
    parser.add_argument(
        "--source-kbps",
        type=int,
        default=None,
        help="each feed's bitrate (default: 600 kbit/s scaled by pixels per second)",
    )
    parser.add_argument(
        "--fit",
        choices=[m.value for m in FitMode],
        default=CompositorConfig().fit.value,
        help="how pictures fill their tiles (CompositorConfig.fit)",
    )
    parser.add_argument(
        "--snap-scale",
        type=float,
        default=CompositorConfig().snap_scale,
        help="CompositorConfig.snap_scale (e.g. 0.125: 360p drawn at exactly half size)",
    )
    parser.add_argument(
        "--crop-tolerance",
        type=float,
        default=CompositorConfig().crop_tolerance,
        help="CompositorConfig.crop_tolerance (e.g. 0.07: 216p copied 1:1 into 204-high tiles)",
    )
    parser.add_argument(
        "--decode-workers",
        type=int,
        default=1,
        help="threads of the decoders' shared DecodePool (the product: Relay.decode_pool, 1)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the cases")
    parser.add_argument("--encoder", action="store_true", help="also sweep encoder settings")
    parser.add_argument("--decoders", action="store_true", help="also compare FFmpeg decoders")
    parser.add_argument(
        "--scaling", type=int, nargs="*", default=[], help="also run with these feed counts"
    )
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"JSON result (default {RESULTS.name}; wall_WxH_Nfps.json for other sources)",
    )
    args = parser.parse_args()
    if not 1 <= args.source_fps <= 60:
        parser.error("--source-fps must lie in 1..60")
    width, height = args.source_size
    source = Source(width, height, args.source_fps, args.source_kbps)
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _round in range(args.rounds):
        for name in args.cases:
            path, threads, config = CASES[name]
            workers = args.decode_workers if threads == SHARED else threads
            compositor = replace(
                config.compositor,
                fit=FitMode(args.fit),
                snap_scale=args.snap_scale,
                crop_tolerance=args.crop_tolerance,
            )
            config = replace(config, compositor=compositor)
            runs[name].append(
                asyncio.run(
                    run(
                        args.feeds,
                        args.seconds,
                        args.warmup,
                        path,
                        wall=config,
                        source=source,
                        decode_workers=workers,
                    )
                )
            )
    cases = {name: _median_case(results) for name, results in runs.items()}
    extra: dict[str, Any] = {}
    if args.encoder:
        extra["encoder_sweep"] = encoder_sweep(args.feeds, source)
    if args.decoders:
        extra["decoder_sweep"] = decoder_sweep(args.feeds, source=source)
    scaling = []
    for feeds_n in args.scaling:
        case = asyncio.run(
            run(
                feeds_n,
                args.seconds,
                args.warmup,
                source=source,
                decode_workers=args.decode_workers,
            )
        )
        scaling.append({k: v for k, v in case.items() if not k.startswith("delay_ms_max")})
    first = next(iter(cases.values()))
    print()
    print(f"wall output: {first['feeds']} x {first['source']} -> {first['canvas']}")
    widths = [max(14, len(name) + 2) for name in cases]
    print(f"{'measure':<44}" + "".join(f"{n:>{w}}" for n, w in zip(cases, widths, strict=True)))
    for label, key in ROWS:
        cells = (f"{c.get(key)!s:>{w}}" for c, w in zip(cases.values(), widths, strict=True))
        print(f"{label:<44}" + "".join(cells))
    print(f"{'machine load average (1 min)':<44}{round(os.getloadavg()[0], 2):>14}")
    if "encoder_sweep" in extra:
        print()
        print(f"{'cpu-used':>9}{'threads':>9}{'bitrate':>10}{'ms/frame':>10}{'kbit/s':>9}")
        for row in extra["encoder_sweep"]:
            print(
                f"{row['cpu_used']:>9}{row['threads']:>9}{row['bitrate'] // 1000:>9}k"
                f"{row['cpu_ms_per_frame']:>10}{row['kbps']:>9}"
            )
    if "decoder_sweep" in extra:
        print()
        print(f"{'decoder':>9}{'feeds':>7}{'ms/frame':>10}  rounds")
        for row in extra["decoder_sweep"]:
            print(
                f"{row['decoder']:>9}{row['feeds']:>7}{row['cpu_ms_per_frame']:>10}  "
                f"{row['all_rounds']}"
            )
    if scaling:
        print()
        head = f"{'feeds':>6}{'out fps':>9}{'decode %':>10}{'compose %':>11}{'encode %':>10}"
        print(f"{head}{'sum %':>8}")
        for case in [*scaling, first]:
            print(
                f"{case['feeds']:>6}{case['output_fps']:>9}{case['cpu_decode_pct']:>10}"
                f"{case['cpu_compose_pct']:>11}{case['cpu_encode_pct']:>10}"
                f"{case['cpu_decode_compose_encode_pct']:>8}"
            )
    if not args.no_write:
        out = args.out or (
            RESULTS
            if source == DEFAULT_SOURCE
            else RESULTS.with_name(f"wall_{source.size}_{source.fps}fps.json")
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "benchmark": "wall",
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "versions": {"python": platform.python_version(), "av": av.__version__},
            "note": "shared 2-core machine under load from other jobs; medians over rounds",
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "budget": "decode + compose + encode <= 60 % of one core",
            "source": {
                "size": source.size,
                "fps": source.fps,
                "kbps_target": source.bitrate // 1000,
                "decode_workers": args.decode_workers,
            },
            "cases": cases,
            "rounds": {name: results for name, results in runs.items()},
            **extra,
            "scaling": scaling,
        }
        out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        print(f"\nwrote {out}")


def _median_case(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's figures: the median over rounds of every number, the rest as is."""
    out = dict(results[0])
    for key, value in results[0].items():
        values = [r[key] for r in results if isinstance(r.get(key), int | float)]
        if isinstance(value, int | float) and not isinstance(value, bool) and values:
            median = statistics.median(values)
            digits = 3 if key.endswith("_ms_per_frame") else 1
            out[key] = round(median) if isinstance(value, int) else round(median, digits)
    return out


if __name__ == "__main__":
    main()
