"""Signalling benchmark: 220 terminals join, then the chair moves the floor 100 times.

The server runs as its own process (``huishang serve`` on a generated config with a chair and
220 terminal sites), so its CPU is measured apart from the load generator. Clients are raw
websockets in this process; receive times use CLOCK_MONOTONIC, which both processes share.

Prints a table and writes benchmarks/results/signalling.json. Budgets (issue 2): all 220 joined
within 3 s; fan-out p95 (chair's request → the last of 220 terminals has the event) under 50 ms.

    .venv/bin/python benchmarks/signalling_bench.py [--terminals 220] [--changes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from web.tokens import hash_token, new_token

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "signalling.json"
TICKS = os.sysconf("SC_CLK_TCK")


def write_config(folder: Path, terminals: int) -> dict[str, str]:
    """A chair and *terminals* terminal sites, with fresh tokens; returns site → token."""
    tokens = {"bench": new_token()}
    lines = [
        '[[sites]]\nid = "bench"\nname = "基准指挥中心"\nrole = "chair"\nlevel = "district"\n'
        f'token_hash = "{hash_token(tokens["bench"])}"\n'
    ]
    for i in range(terminals):
        site = f"bench.t{i:03d}"
        tokens[site] = new_token()
        lines.append(
            f'[[sites]]\nid = "{site}"\nname = "终端{i:03d}"\nrole = "terminal"\n'
            f'level = "community"\nparent = "bench"\ntoken_hash = "{hash_token(tokens[site])}"\n'
        )
    (folder / "sites.toml").write_text("\n".join(lines), encoding="utf-8")
    (folder / "tokens.toml").write_text(
        "\n".join(f'"{k}" = "{v}"' for k, v in tokens.items()) + "\n", encoding="utf-8"
    )
    (folder / "huishang.toml").write_text(
        'sites = "sites.toml"\ndata_dir = "data"\n'
        '[web]\nhost = "127.0.0.1"\nport = 0\n[signalling]\nhost = "127.0.0.1"\nport = 0\n'
        # The chair below sends as fast as fan-out completes: lift the per-session rate limit.
        "[limits]\nrate_per_s = 1000.0\nrate_burst = 1000\n"
        '[demo]\ntokens_file = "tokens.toml"\n',
        encoding="utf-8",
    )
    return tokens


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Terminal:
    def __init__(self, site: str) -> None:
        self.site = site
        self.ws: ClientConnection | None = None
        self.floor_times: dict[Any, float] = {}
        self.reader: asyncio.Task[None] | None = None

    async def join(self, url: str, token: str) -> float:
        start = time.monotonic()
        self.ws = await connect(url, compression=None, max_size=None, open_timeout=30)
        await self.ws.send(json.dumps({"type": "hello", "protocol": 1, "token": token}))
        while True:
            message = json.loads(await self.ws.recv())
            if message["type"] == "welcome":
                break
        done = time.monotonic()
        self.reader = asyncio.create_task(self._read())
        return done - start

    async def _read(self) -> None:
        assert self.ws is not None
        async for frame in self.ws:
            now = time.monotonic()
            if '"type":"floor"' in frame:  # cheap filter before parsing
                message = json.loads(frame)
                self.floor_times[message["site"]] = now


async def run(terminals: int, changes: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="hs-bench-"))
    tokens = write_config(folder, terminals)
    server = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "serve", "--config", str(folder / "huishang.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        url = ""
        assert server.stdout is not None
        for line in server.stdout:
            if match := re.match(r"signalling (\S+)", line):
                url = match.group(1)
                break
        assert url, "the server printed no signalling URL"
        await asyncio.sleep(0.3)
        cpu0 = cpu_seconds(server.pid)
        terms = [Terminal(f"bench.t{i:03d}") for i in range(terminals)]
        start = time.monotonic()
        join_times = await asyncio.gather(*(t.join(url, tokens[t.site]) for t in terms))
        join_total = time.monotonic() - start
        cpu_join = cpu_seconds(server.pid) - cpu0

        chair = Terminal("bench")
        await chair.join(url, tokens["bench"])
        await asyncio.sleep(0.5)
        cpu1 = cpu_seconds(server.pid)
        fanout: list[float] = []
        assert chair.ws is not None
        for i in range(changes):
            target = terms[i % terminals].site if i % 2 == 0 else None
            if target is None and i % 4 == 1:
                target = terms[(i * 7) % terminals].site
            sent = time.monotonic()
            await chair.ws.send(json.dumps({"type": "floor", "site": target, "id": i}))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if all(target in t.floor_times for t in terms):
                    break
                await asyncio.sleep(0.0005)
            else:
                raise RuntimeError(f"floor change {i} did not reach every terminal")
            fanout.append(max(t.floor_times.pop(target) for t in terms) - sent)
            for t in terms:
                t.floor_times.clear()
        wall_floor = sum(fanout)
        cpu_floor = cpu_seconds(server.pid) - cpu1
        for t in [*terms, chair]:
            assert t.ws is not None
            await t.ws.close()
    finally:
        server.terminate()
        server.wait(10)
    return {
        "terminals": terminals,
        "floor_changes": changes,
        "join_s": {
            "p50": statistics.median(join_times),
            "p95": pct(join_times, 95),
            "total": join_total,
        },
        "fanout_ms": {
            "p50": statistics.median(fanout) * 1000,
            "p95": pct(fanout, 95) * 1000,
            "max": max(fanout) * 1000,
        },
        "server_cpu_s": {"join": cpu_join, "floor_changes": cpu_floor},
        "server_cpu_per_floor_change_ms": cpu_floor / changes * 1000,
        "server_cpu_share_during_floor_changes": cpu_floor / wall_floor if wall_floor else None,
        "budgets": {"join_total_s": 3.0, "fanout_p95_ms": 50.0},
        "within_budget": join_total <= 3.0 and pct(fanout, 95) * 1000 < 50.0,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--terminals", type=int, default=220)
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    result = asyncio.run(run(args.terminals, args.changes))
    j, f, c = result["join_s"], result["fanout_ms"], result["server_cpu_s"]
    rows = [
        ("terminals joined", f"{result['terminals']}", ""),
        ("join p50 / p95", f"{j['p50'] * 1000:.0f} / {j['p95'] * 1000:.0f} ms", ""),
        ("join total (all)", f"{j['total']:.2f} s", "budget ≤ 3 s"),
        ("fan-out p50 / p95", f"{f['p50']:.1f} / {f['p95']:.1f} ms", "budget p95 < 50 ms"),
        ("fan-out max", f"{f['max']:.1f} ms", ""),
        ("server CPU, joins", f"{c['join']:.2f} s", ""),
        (
            "server CPU per floor change",
            f"{result['server_cpu_per_floor_change_ms']:.2f} ms",
            f"{result['terminals'] + 1} recipients",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'signalling benchmark':{width}}  value")
    for name, value, note in rows:
        print(f"{name:{width}}  {value:>18}  {note}")
    print("within budget:", result["within_budget"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
