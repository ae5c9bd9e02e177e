"""WHIP ingest benchmark: server CPU of one H.264 WHIP push with its VP8 transcode, against a
VP8 WHIP push forwarded without transcoding (the anchor), in the same run.

Run: ``.venv/bin/python benchmarks/whip_bench.py [--rounds N] [--windows N] [--window S]``.
Prints a table and writes ``benchmarks/results/whip.json``.

Shape:

- The server under test is the real one (``web.app.Huishang`` on the demo config, loopback,
  free ports) in this process; its CPU is ``getrusage(RUSAGE_SELF)`` (user + system, all
  threads: aiortc's receive path and H.264 decoder thread, the VP8 encoder thread, the
  relay), per window of wall time, in percent of one core. Idle windows (no ingest) are
  measured in the same run and subtracted.
- The clients are subprocesses, so their CPU is not counted:
  ``h264``: PyAV's bundled FFmpeg ``whip`` muxer, 720p30 H.264 (libx264 baseline, no
  B-frames, ~2 Mbit/s) + Opus; ``vp8``: an aiortc client, 720p30 VP8 (libvpx, ~2 Mbit/s) +
  Opus. Both encode a 3 s clip of a scrolling texture once at start and replay it in a loop
  (a keyframe every 3 s), so the clients' own encoders do not compete for the 2 cores.
- One subscriber watches each push: a relay slot with a counting downstream port (no
  network, no decode), routed to the site's video publication. Without it the transcode
  would idle (``Vp8Publisher`` encodes only while watched).
- Each round measures idle, then the VP8 push, then the H.264 push (warm-up first); the
  table quotes medians over every window of a case. The machine is shared: figures are
  noisy, compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fractions
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.ice import IceConfig, apply_ice_config

RESULTS = Path(__file__).resolve().parent / "results" / "whip.json"
WIDTH, HEIGHT, FPS, BITRATE = 1280, 720, 30, 2_000_000
CLIP_FRAMES = 90  # 3 s, replayed in a loop
SITE = "tianhe.zhuji"


def texture_clip(count: int) -> list[np.ndarray[Any, np.dtype[np.uint8]]]:
    """I420 planes (as one (h*3/2, w) array) of a smooth texture scrolling 2 px a frame."""
    import cv2

    rng = np.random.default_rng(7)
    scale = 48
    coarse = rng.integers(0, 256, (HEIGHT * 3 // 2 // scale + 1, (WIDTH + 2 * count) // scale + 1))
    texture = cv2.resize(
        coarse.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC
    )
    return [
        np.ascontiguousarray(texture[: HEIGHT * 3 // 2, 2 * i : 2 * i + WIDTH])
        for i in range(count)
    ]


# -- clients (subprocesses) -------------------------------------------------------------------


def _stop_requested() -> bool:
    """A line on stdin asks the client to end its session (with DELETE)."""
    import select

    return bool(select.select([sys.stdin], [], [], 0)[0])


def client_h264(url: str, token: str, cert: str, key: str, seconds: float) -> None:
    """FFmpeg's WHIP muxer: a pre-encoded H.264 clip replayed at 30 fps, Opus silence."""
    import av

    out = av.open(
        url,
        mode="w",
        format="whip",
        options={
            "cert_file": cert,
            "key_file": key,
            "authorization": token,
            "handshake_timeout": "20000",
        },
    )
    rate = str(BITRATE)
    video = out.add_stream(
        "libx264",
        rate=FPS,
        options={
            "preset": "veryfast",
            "tune": "zerolatency",
            "profile": "baseline",
            "bf": "0",
            "g": str(CLIP_FRAMES),
            "b": rate,
            "maxrate": rate,
            "bufsize": rate,
        },
    )
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    audio = out.add_stream("libopus", rate=48000, layout="stereo")
    clip: list[tuple[bytes, bool]] = []
    for i, picture in enumerate(texture_clip(CLIP_FRAMES)):
        frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
        frame.pts, frame.time_base = i, fractions.Fraction(1, FPS)
        clip.extend((bytes(p), bool(p.is_keyframe)) for p in video.encode(frame))
    clip.extend((bytes(p), bool(p.is_keyframe)) for p in video.encode(None))
    silence = np.zeros((1, 1920), np.int16)
    start, n, samples = time.time(), 0, 0
    print(f"ready {8 * sum(len(d) for d, _ in clip) * FPS / len(clip) / 1000:.0f}", flush=True)
    while time.time() - start < seconds and not _stop_requested():
        data, keyframe = clip[n % len(clip)]
        packet = av.Packet(data)
        packet.stream = video
        packet.time_base = fractions.Fraction(1, FPS)
        packet.pts = packet.dts = n
        packet.is_keyframe = keyframe
        out.mux(packet)
        while samples < (n + 1) * 1600:
            chunk = av.AudioFrame.from_ndarray(silence, format="s16", layout="stereo")
            chunk.sample_rate, chunk.pts = 48000, samples
            chunk.time_base = fractions.Fraction(1, 48000)
            samples += 960
            for p in audio.encode(chunk):
                out.mux(p)
        n += 1
        time.sleep(max(0.0, start + n / FPS - time.time()))
    out.close()


def client_vp8(url: str, token: str, seconds: float) -> None:
    """An aiortc WHIP client: a pre-encoded VP8 clip replayed at 30 fps, Opus silence."""
    asyncio.run(_client_vp8(url, token, seconds))


async def _client_vp8(url: str, token: str, seconds: float) -> None:
    import aiohttp
    import av
    from aiortc import (
        RTCBundlePolicy,
        RTCConfiguration,
        RTCPeerConnection,
        RTCRtpSender,
        RTCSessionDescription,
    )
    from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack

    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.bit_rate, codec.gop_size = BITRATE, 3000
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    for k in ("minrate", "maxrate", "bufsize"):
        codec.options[k] = str(BITRATE)
    clip: list[bytes] = []
    for i, picture in enumerate(texture_clip(CLIP_FRAMES)):
        frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
        frame.pts, frame.time_base = i, fractions.Fraction(1, FPS)
        clip.extend(bytes(p) for p in codec.encode(frame))  # type: ignore[attr-defined]
    clip.extend(bytes(p) for p in codec.encode(None))  # type: ignore[attr-defined]

    class Replay(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.count = 0
            self.start: float | None = None

        async def recv(self) -> av.Packet:
            if self.readyState != "live":
                raise MediaStreamError
            if self.start is None:
                self.start = time.time()
            wait = self.start + self.count / FPS - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            packet = av.Packet(clip[self.count % len(clip)])
            packet.pts = self.count * (90000 // FPS)
            packet.time_base = fractions.Fraction(1, 90000)
            self.count += 1
            return packet

    apply_ice_config(IceConfig(host_addresses=("127.0.0.1",)))  # loopback only, as the server
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    sender = pc.addTransceiver(Replay(), direction="sendonly")
    caps = RTCRtpSender.getCapabilities("video").codecs
    sender.setCodecPreferences(
        [c for c in caps if c.mimeType.lower() in ("video/vp8", "video/rtx")]
    )
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=pc.localDescription.sdp, headers=headers) as reply:
            assert reply.status == 201, await reply.text()
            answer = await reply.text()
            location = reply.headers["Location"]
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        print(f"ready {8 * sum(len(d) for d in clip) * FPS / len(clip) / 1000:.0f}", flush=True)
        start = time.time()
        while time.time() - start < seconds and not _stop_requested():
            await asyncio.sleep(0.2)
        base = url.rsplit("/whip", 1)[0]
        async with http.delete(base + location, headers={"Authorization": f"Bearer {token}"}):
            pass
    await pc.close()


# -- the server side --------------------------------------------------------------------------


class CountingPort:
    """A subscriber that only counts what the relay hands it (bridge.slot.DownstreamPort)."""

    ssrc = 0x5EED
    ready = True

    def __init__(self) -> None:
        self.packets = 0
        self.octets = 0

    async def send(self, sequence_number: int, data: bytes, payload_size: int) -> None:
        self.packets += 1
        self.octets += payload_size

    def close(self) -> None:
        pass


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def cpu_window(seconds: float) -> float:
    c0, t0 = cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    return 100.0 * (cpu_seconds() - c0) / (time.monotonic() - t0)


async def measure_push(
    app: Any, kind: str, cert: Path, key: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Start one push of *kind*, watch it, measure ``args.windows`` CPU windows, stop it."""
    from bridge.rtp import StreamRewriter
    from signalling.model import SiteId
    from web.whip import WhipGateway

    token = app.token_for(SiteId(SITE))
    url = app.web_url + "/whip"
    seconds = args.warmup + args.windows * args.window + 15
    argv = [
        sys.executable,
        __file__,
        "--client",
        kind,
        url,
        token,
        str(cert),
        str(key),
        str(seconds),
    ]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    ready = asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)
    gateway = next(g for g in app.gateways if isinstance(g, WhipGateway))
    media = app.media
    slot = media.relay.create_slot(f"bench-{kind}-{time.monotonic_ns()}", "video")
    port = CountingPort()
    slot.connect(
        port,
        StreamRewriter(
            ssrc=port.ssrc,
            payload_type=96,
            clock_rate=90000,
            vp8=True,
            extension_ids={},
            mid=None,
            initial_sequence=1,
            initial_timestamp=1,
        ),
    )
    try:
        deadline = time.monotonic() + 40
        while not gateway.ingests or not next(iter(gateway.ingests.values())).publisher.connected:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                _, err_bytes = proc.communicate()
                err = err_bytes.decode(errors="replace")
                raise RuntimeError(f"the {kind} push did not connect: {err[-2000:]}")
            await asyncio.sleep(0.1)
        (ingest,) = gateway.ingests.values()
        publisher = ingest.publisher
        media.relay.route(slot, ingest.sources["video"])
        await asyncio.sleep(args.warmup)
        clip_kbps = float((await ready).split()[1])
        stats0 = await _inbound(publisher)
        port0, decoded0 = (port.packets, port.octets), publisher.frames_decoded
        enc0 = publisher.transcoder.stats.encode_s if publisher.transcoder else 0.0
        t0 = time.monotonic()
        windows = [await cpu_window(args.window) for _ in range(args.windows)]
        elapsed = time.monotonic() - t0
        stats1 = await _inbound(publisher)
        enc1 = publisher.transcoder.stats.encode_s if publisher.transcoder else 0.0
        return {
            "codec": publisher.codecs.get("video"),
            "cpu_pct_windows": windows,
            "in_video_kbps": clip_kbps,  # the client's clip, as encoded
            "in_video_pps": (stats1 - stats0) / elapsed,
            "out_video_kbps": 8 * (port.octets - port0[1]) / elapsed / 1000,
            "out_video_pps": (port.packets - port0[0]) / elapsed,
            "decoded_fps": (publisher.frames_decoded - decoded0) / elapsed,
            "vp8_encode_pct": 100.0 * (enc1 - enc0) / elapsed,
        }
    finally:
        media.relay.remove_slot(slot)
        if proc.poll() is None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.write(b"stop\n")
                proc.stdin.flush()
        deadline = time.monotonic() + 20
        while (gateway.ingests or proc.poll() is None) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # the client DELETEs its session and exits
        if proc.poll() is None:
            proc.kill()
        await asyncio.get_running_loop().run_in_executor(None, proc.communicate)
        if gateway.ingests:
            raise RuntimeError(f"the {kind} push did not end its WHIP session")


async def _inbound(publisher: Any) -> int:
    """Packets received on the push's video so far (aiortc's inbound-rtp stats)."""
    report = await publisher.pc.getStats()
    packets = 0
    for stats in report.values():
        if getattr(stats, "type", "") == "inbound-rtp" and getattr(stats, "kind", "") == "video":
            packets += stats.packetsReceived
    return int(packets)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from web.app import Huishang
    from web.config import default_config_path, load_config
    from web.tls import make_self_signed

    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(default_config_path(), data_dir_override=Path(tmp) / "data")
        config = dataclasses.replace(
            config,
            web=dataclasses.replace(config.web, host="127.0.0.1", port=0),
            signalling=dataclasses.replace(config.signalling, host="127.0.0.1", port=0),
        )
        cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
        make_self_signed(cert, key, ["localhost"])
        app = await Huishang.open(config=config)
        idle: list[float] = []
        pushes: dict[str, list[dict[str, Any]]] = {"vp8": [], "h264": []}
        try:
            await asyncio.sleep(2.0)
            for round_no in range(args.rounds):
                idle.extend([await cpu_window(args.window) for _ in range(args.windows)])
                for kind in ("vp8", "h264"):
                    result = await measure_push(app, kind, cert, key, args)
                    pushes[kind].append(result)
                    print(
                        f"round {round_no + 1} {kind}: median "
                        f"{statistics.median(result['cpu_pct_windows']):.1f} % "
                        f"(idle {statistics.median(idle):.1f} %)",
                        flush=True,
                    )
        finally:
            await app.close()
    return summarise(idle, pushes, args)


def summarise(
    idle: list[float], pushes: dict[str, list[dict[str, Any]]], args: argparse.Namespace
) -> dict[str, Any]:
    idle_median = statistics.median(idle)
    out: dict[str, Any] = {
        "machine": "shared 2-core VM, other work running: compare within one run",
        "profile": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "bitrate": BITRATE},
        "rounds": args.rounds,
        "windows_per_case": args.windows,
        "window_s": args.window,
        "idle_cpu_pct_median": idle_median,
        "idle_cpu_pct_windows": idle,
        "cases": {},
    }
    for kind, results in pushes.items():
        windows = [w for r in results for w in r["cpu_pct_windows"]]
        median = statistics.median(windows)

        def med(field: str, results: list[dict[str, Any]] = results) -> float:
            return statistics.median(r[field] for r in results)

        out["cases"][kind] = {
            "codec_in": results[0]["codec"],
            "cpu_pct_median": median,
            "cpu_pct_minus_idle": median - idle_median,
            "cpu_pct_p25": float(np.percentile(windows, 25)),
            "cpu_pct_p75": float(np.percentile(windows, 75)),
            "vp8_encode_pct": med("vp8_encode_pct"),
            "decoded_fps": med("decoded_fps"),
            "in_video_kbps": med("in_video_kbps"),
            "out_video_kbps": med("out_video_kbps"),
            "rounds": results,
        }
    vp8, h264 = out["cases"]["vp8"], out["cases"]["h264"]
    out["transcode_cost_pct"] = h264["cpu_pct_minus_idle"] - vp8["cpu_pct_minus_idle"]
    out["ratio_h264_to_vp8"] = h264["cpu_pct_minus_idle"] / max(vp8["cpu_pct_minus_idle"], 1e-9)
    return out


def print_table(results: dict[str, Any]) -> None:
    rows = [
        (
            "case",
            "CPU % (median)",
            "minus idle",
            "p25–p75",
            "VP8 enc %",
            "dec fps",
            "in kbit/s",
            "out kbit/s",
        )
    ]
    names = {"vp8": "VP8 push, forwarded (anchor)", "h264": "H.264 push → VP8 transcode"}
    for kind in ("vp8", "h264"):
        c = results["cases"][kind]
        rows.append(
            (
                names[kind],
                f"{c['cpu_pct_median']:.1f}",
                f"{c['cpu_pct_minus_idle']:.1f}",
                f"{c['cpu_pct_p25']:.1f}–{c['cpu_pct_p75']:.1f}",
                f"{c['vp8_encode_pct']:.1f}",
                f"{c['decoded_fps']:.1f}",
                f"{c['in_video_kbps']:.0f}",
                f"{c['out_video_kbps']:.0f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(
        f"idle server: {results['idle_cpu_pct_median']:.1f} % · transcode costs "
        f"{results['transcode_cost_pct']:.1f} % of a core more than forwarding "
        f"({results['ratio_h264_to_vp8']:.1f}x the anchor) · 720p30, ~2 Mbit/s in; "
        "percent of one core, medians; shared 2-core machine"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        kind, url, token, cert, key, seconds = sys.argv[2:8]
        if kind == "h264":
            client_h264(url, token, cert, key, float(seconds))
        else:
            client_vp8(url, token, float(seconds))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--windows", type=int, default=6, help="CPU windows per case and round")
    parser.add_argument("--window", type=float, default=1.5, help="seconds per CPU window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print_table(results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
