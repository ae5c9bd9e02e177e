"""Cascade benchmark: latency added by each uplink hop (province → city → district).

Run: ``.venv/bin/python benchmarks/cascade_bench.py [--seconds N] [--fps N]`` (on a loopback-only
namespace where one can be made: ``unshare --net sh -c 'ip link set lo up && ...'``). Prints a
table and writes ``benchmarks/results/cascade.json``.

Shape:

- Three real ``huishang serve`` processes with small configs written to a temporary folder:
  the province, the city (``[uplink]`` to the province) and the district (``[uplink]`` to the
  city), as a deployment runs them.
- The source is the province's chair: an aiortc terminal sending
  :class:`bridge.testkit.MarkedVideoTrack` (each frame paints its index; the time it was handed
  to the encoder is kept). The city's chair and the district's chair give the floor to their
  uplinks, so the province's programme (its chair) is what all three viewers get.
- Three receive-only viewers in this process, all decoding (aiortc, VP8): one at the province
  (direct, the anchor), one at the city (one hop), one at the district (two hops). Each decoded
  frame's index is read back and its arrival time taken on the same clock as the source's.
- Reported: end-to-end latency per viewer (source encoder hand-off → decoded at the viewer,
  p50/p95) and the latency each hop adds, per frame: city − province and district − city for
  every frame index all three decoded (p50/p95). Encode, decode and the terminals' jitter
  buffers are in every path alike, so the differences are what a hop costs (a relay pass
  out of the upper server into the uplink's peer connection, and one through the lower
  server's relay). The machine is shared (2 cores, other work running): figures are
  indicative.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiortc import RTCSessionDescription

from bridge.ice import IceConfig, apply_ice_config
from bridge.testkit import LoopbackClient, MarkedVideoTrack
from signalling.client import Client, ClientError
from web.tokens import hash_token

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cascade.json"

LEVELS: dict[str, list[tuple[str, str, str, str]]] = {
    "province": [
        ("gd", "广东省应急指挥中心", "chair", "district"),
        ("gd.gz", "广州市", "uplink", "district"),
        ("gd.viewer", "省值班席", "terminal", "street"),
    ],
    "city": [
        ("gz", "广州市应急指挥中心", "chair", "district"),
        ("gz.tianhe", "天河区", "uplink", "district"),
        ("gz.up", "广东省", "uplink", "uplink"),
        ("gz.viewer", "市值班席", "terminal", "street"),
    ],
    "district": [
        ("tianhe", "天河区应急指挥中心", "chair", "district"),
        ("tianhe.up", "广州市应急指挥中心", "uplink", "uplink"),
        ("tianhe.viewer", "珠吉街", "terminal", "street"),
    ],
}
#: level → (upper level, our site there, the local uplink site)
UPLINKS = {"city": ("province", "gd.gz", "gz.up"), "district": ("city", "gz.tianhe", "tianhe.up")}


def token(level: str, site: str) -> str:
    return f"bench-{level}-{site}-0123456789"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Server:
    """One ``huishang serve`` process with its own config folder."""

    def __init__(self, level: str, folder: Path, web: int, sig: int) -> None:
        self.level, self.folder, self.web, self.sig = level, folder, web, sig
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.sig}/"

    def write(self, servers: dict[str, Server]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        entries = [  # (the upper level's programme here, level "uplink", needs no token)
            f'[[sites]]\nid = "{sid}"\nname = "{name}"\nrole = "{role}"\nlevel = "{lvl}"\n'
            + (f'token_hash = "{hash_token(token(self.level, sid))}"\n' if lvl != "uplink" else "")
            for sid, name, role, lvl in LEVELS[self.level]
        ]
        (self.folder / "sites.toml").write_text("\n".join(entries), encoding="utf-8")
        main = (
            f'sites = "sites.toml"\ndata_dir = "data"\n[web]\nport = {self.web}\n'
            f'[signalling]\nport = {self.sig}\n[ice]\nhost_addresses = ["127.0.0.1"]\n'
        )
        if self.level in UPLINKS:
            upper, there, here = UPLINKS[self.level]
            main += (
                f'[uplink]\nurl = "{servers[upper].url}"\ntoken = "{token(upper, there)}"\n'
                f'site = "{here}"\nretry_min_s = 0.5\nretry_max_s = 2.0\n'
            )
        path = self.folder / "huishang.toml"
        path.write_text(main, encoding="utf-8")
        return path

    def start(self, servers: dict[str, Server]) -> None:
        config = self.write(servers)
        with open(self.folder / "log.txt", "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "web.cli", "serve", "--config", str(config)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + 60
        while "signalling " not in (self.folder / "log.txt").read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.level} did not start; see {self.folder / 'log.txt'}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


async def connect(server: Server, site: str, client: LoopbackClient) -> Client:
    """Offer *client*'s transceivers to *server* as *site* and wait until connected."""
    signalling = await Client.connect(server.url, token(server.level, site), timeout=20)
    pc = client.pc
    await pc.setLocalDescription(await pc.createOffer())
    reply = await signalling.request({"type": "offer", "sdp": pc.localDescription.sdp}, 20)
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    deadline = time.monotonic() + 30
    while pc.connectionState != "connected":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{site}: media did not connect")
        await asyncio.sleep(0.05)
    return signalling


async def give_floor(chair: Client, site: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            await chair.request({"type": "floor", "site": site})
            return
        except ClientError as exc:  # the uplink site is not online yet
            if exc.code != "conflict" or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(servers: dict[str, Server], seconds: float, fps: int) -> dict[str, Any]:
    source = MarkedVideoTrack(1, fps=fps)
    chair = LoopbackClient()
    chair.send(source)
    chairs = {"province": await connect(servers["province"], "gd", chair)}
    for level, site in (("city", "gz"), ("district", "tianhe")):
        idle = LoopbackClient()
        idle.receive(audio=True, videos=1)
        chairs[level] = await connect(servers[level], site, idle)
    await give_floor(chairs["city"], "gz.up")
    await give_floor(chairs["district"], "tianhe.up")
    viewers: dict[str, LoopbackClient] = {}
    for level in ("province", "city", "district"):
        viewer = LoopbackClient()
        viewer.receive(audio=True, videos=1)
        await connect(servers[level], LEVELS[level][-1][0], viewer)
        viewers[level] = viewer
    deadline = time.monotonic() + 60
    while not all(any(v.frames for v in c.video.values()) for c in viewers.values()):
        if time.monotonic() > deadline:
            raise RuntimeError("a viewer never decoded the province's picture")
        await asyncio.sleep(0.1)
    await asyncio.sleep(2.0)  # warm-up: the jitter buffers settle
    for viewer in viewers.values():
        for received in viewer.video.values():
            received.frames.clear()
    sent_copy: dict[int, float] = {}
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        await asyncio.sleep(0.5)
        sent_copy.update(source.sent_at)
    arrivals: dict[str, dict[int, float]] = {}
    for level, viewer in viewers.items():
        first: dict[int, float] = {}
        for received in viewer.video.values():
            for value, at in received.frames:
                if value >> 12 == 1:
                    first.setdefault(value, at)
        arrivals[level] = first
    latency = {
        level: [(at - sent_copy[v]) * 1000 for v, at in got.items() if v in sent_copy]
        for level, got in arrivals.items()
    }
    common = set(arrivals["province"]) & set(arrivals["city"]) & set(arrivals["district"])
    hops = {
        "province→city": [(arrivals["city"][v] - arrivals["province"][v]) * 1000 for v in common],
        "city→district": [(arrivals["district"][v] - arrivals["city"][v]) * 1000 for v in common],
    }
    sent_frames = len([v for v in sent_copy])
    for c in [chair, *viewers.values()]:
        await c.close()
    for client in chairs.values():
        await client.close()

    def summary(values: list[float]) -> dict[str, float | int]:
        return {
            "frames": len(values),
            "p50_ms": round(statistics.median(values), 2) if values else float("nan"),
            "p95_ms": round(pct(values, 0.95), 2),
            "mean_ms": round(statistics.fmean(values), 2) if values else float("nan"),
        }

    return {
        "seconds": seconds,
        "fps": fps,
        "frames_sent": sent_frames,
        "end_to_end": {level: summary(values) for level, values in latency.items()},
        "added_per_hop": {hop: summary(values) for hop, values in hops.items()},
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    undo = apply_ice_config(IceConfig(host_addresses=("127.0.0.1",)))
    ports = free_ports(6)
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        servers = {
            level: Server(level, Path(tmp) / level, ports[2 * i], ports[2 * i + 1])
            for i, level in enumerate(("province", "city", "district"))
        }
        try:
            for server in servers.values():
                await asyncio.to_thread(server.start, servers)
            return await measure(servers, args.seconds, args.fps)
        finally:
            for server in reversed(servers.values()):
                await asyncio.to_thread(server.stop)
            undo()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time")
    parser.add_argument("--fps", type=int, default=30, help="source frame rate (320x240)")
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    result["machine"] = f"{os.cpu_count()} CPUs, shared with other work (figures are indicative)"
    print(f"cascade latency, {args.seconds:g} s at {args.fps} fps, 320x240 VP8")
    print(f"{'path':<28}{'frames':>8}{'p50 ms':>10}{'p95 ms':>10}")
    for level, row in result["end_to_end"].items():
        hops = {"province": 0, "city": 1, "district": 2}[level]
        name = f"source → {level} ({hops} hop{'s' if hops != 1 else ''})"
        print(f"{name:<28}{row['frames']:>8}{row['p50_ms']:>10}{row['p95_ms']:>10}")
    for hop, row in result["added_per_hop"].items():
        name = f"added by {hop}"
        print(f"{name:<28}{row['frames']:>8}{row['p50_ms']:>10}{row['p95_ms']:>10}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
