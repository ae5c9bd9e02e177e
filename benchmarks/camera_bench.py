"""CPU of one RTSP camera ingest (720p H.264 → VP8), against plain decode-only in the same run.

The camera is GStreamer's RTSP server (``tests/rtsp_camera_server.py``, run by Debian's
``/usr/bin/python3``) serving a moving ``videotestsrc`` (SMPTE bars scrolling sideways) as
1280x720 H.264 at 25 fps, 2 Mbit/s, over RTSP/TCP on loopback. Its own CPU is not counted:
only this process's (``time.process_time``, user + system, all threads) over a fixed window
after a warm-up, so each row is "percent of one core" for that way of taking the camera in.

Rows, each a fresh connection to the same server, one after the other:

- ``decode only (anchor)``: a plain PyAV loop in a thread: open, demux, decode (threads=1),
  drop the frame. The least any ingest can cost.
- ``camera, unwatched``: :class:`bridge.camera.RtspCamera` pulling, nobody subscribed: decode
  only, plus our per-frame bookkeeping (the camera is on a wall only through its decoded
  track; here nobody reads that either).
- ``camera → VP8``: the same with one relay slot carrying the camera's publication: decode +
  VP8 encode (libvpx, the camera's encoder settings) + RTP packetising + the relay's
  forwarding into one slot. This is what "transcoded once at the edge" costs.

Usage: ``python benchmarks/camera_bench.py [--seconds N] [--warmup N]``. Writes
``benchmarks/results/camera.json``. Figures come from a shared, noisy 2-core machine:
compare rows within one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import av

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.camera import CameraConfig, RtspCamera
from bridge.publication import RelayConfig
from bridge.rtp import StreamRewriter
from bridge.slot import Slot

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "camera.json"
SERVER = ROOT / "tests" / "rtsp_camera_server.py"
DEBIAN_PYTHON = "/usr/bin/python3"


class CountingPort:
    """A subscriber's sender that only counts (the relay's output into one slot)."""

    ssrc = 0x1234
    ready = True

    def __init__(self) -> None:
        self.packets = 0
        self.octets = 0

    async def send(self, sequence_number: int, data: bytes, payload_size: int) -> None:
        self.packets += 1
        self.octets += len(data)

    def close(self) -> None:
        pass


def start_server(
    width: int, height: int, fps: int, bitrate: int
) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        [
            DEBIAN_PYTHON,
            str(SERVER),
            "--port",
            "0",
            "--pattern",
            "smpte",
            "--speed",
            "4",
            "--width",
            str(width),
            "--height",
            str(height),
            "--fps",
            str(fps),
            "--bitrate",
            str(bitrate),
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(b"READY "):
        process.kill()
        raise SystemExit(f"the RTSP server did not start: {line!r}")
    # keep reading its CLIENTS lines so its pipe never fills
    threading.Thread(target=lambda: process.stdout and process.stdout.read(), daemon=True).start()
    return process, line.split()[1].decode()


async def measure(seconds: float, warmup: float, frames: Any) -> dict[str, float]:
    """CPU % of one core and frames per second over *seconds* after *warmup*."""
    await asyncio.sleep(warmup)
    cpu0, wall0, n0 = time.process_time(), time.perf_counter(), frames()
    await asyncio.sleep(seconds)
    cpu1, wall1, n1 = time.process_time(), time.perf_counter(), frames()
    wall = wall1 - wall0
    count = n1 - n0
    cpu = cpu1 - cpu0
    return {
        "cpu_pct": 100.0 * cpu / wall,
        "fps": count / wall,
        "cpu_ms_per_frame": 1000.0 * cpu / count if count else float("nan"),
    }


async def decode_only(url: str, seconds: float, warmup: float) -> dict[str, float]:
    stop = threading.Event()
    count = [0]

    def run() -> None:
        options = {"rtsp_transport": "tcp", "timeout": "5000000"}
        with av.open(url, "r", options=options, timeout=(5.0, 5.0)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            for packet in container.demux(stream):
                if stop.is_set():
                    return
                for _frame in packet.decode():
                    count[0] += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        return await measure(seconds, warmup, lambda: count[0])
    finally:
        stop.set()
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)


async def camera_row(url: str, seconds: float, warmup: float, watched: bool) -> dict[str, float]:
    camera = RtspCamera("cam", CameraConfig(url), relay_config=RelayConfig())
    port = CountingPort()
    if watched:
        slot = Slot("bench", "video", config=camera.publication.config)
        rewriter = StreamRewriter(
            ssrc=port.ssrc,
            payload_type=96,
            clock_rate=90000,
            vp8=True,
            extension_ids={},
            mid=None,
            initial_sequence=0,
            initial_timestamp=0,
        )
        slot.connect(port, rewriter)
        slot.switch(camera.publication)
    camera.want(True)
    try:
        encoded0 = camera.publisher.stats.encoded
        octets0 = port.octets
        started = time.perf_counter()
        row = await measure(seconds, warmup, lambda: camera.frames)
        elapsed = time.perf_counter() - started
        stats = camera.publisher.stats
        row["encoded_fps"] = (stats.encoded - encoded0) / elapsed
        row["kbit_s"] = 8 * (port.octets - octets0) / elapsed / 1000
        row["encode_ms_per_frame"] = 1000 * stats.encode_s / stats.encoded if stats.encoded else 0.0
        row["replaced"] = stats.replaced
        return row
    finally:
        await camera.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    process, url = start_server(args.width, args.height, args.fps, args.bitrate)
    rows: dict[str, dict[str, float]] = {}
    try:
        rows["decode only (anchor)"] = await decode_only(url, args.seconds, args.warmup)
        rows["camera, unwatched"] = await camera_row(url, args.seconds, args.warmup, False)
        rows["camera → VP8"] = await camera_row(url, args.seconds, args.warmup, True)
    finally:
        process.terminate()
        process.wait(10)
    return {
        "benchmark": "camera",
        "source": f"{args.width}x{args.height}@{args.fps} H.264 {args.bitrate} kbit/s, RTSP/TCP",
        "seconds": args.seconds,
        "warmup": args.warmup,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": "shared, noisy 2-core machine; this process's CPU only (server excluded)",
        "rows": rows,
    }


def print_table(result: dict[str, Any]) -> None:
    rows = result["rows"]
    anchor = rows["decode only (anchor)"]["cpu_pct"]
    print(f"camera ingest, {result['source']}, {result['seconds']} s per row")
    header = f"{'row':<22} {'cpu %':>7} {'× anchor':>9} {'fps in':>7} {'ms/frame':>9}"
    print(header + f" {'fps out':>8} {'enc ms':>7} {'kbit/s':>7}")
    for name, row in rows.items():
        ratio = row["cpu_pct"] / anchor if anchor else float("nan")
        line = (
            f"{name:<22} {row['cpu_pct']:7.1f} {ratio:9.2f} {row['fps']:7.1f}"
            f" {row['cpu_ms_per_frame']:9.2f}"
        )
        if "encoded_fps" in row:
            line += (
                f" {row['encoded_fps']:8.1f} {row['encode_ms_per_frame']:7.2f} {row['kbit_s']:7.0f}"
            )
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--bitrate", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not Path(DEBIAN_PYTHON).exists():
        raise SystemExit("needs Debian's /usr/bin/python3 with python3-gi (GStreamer RTSP server)")
    result = asyncio.run(run(args))
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
