"""``GET /metrics`` (web/metrics.py): Prometheus text format read back from the real server."""

from __future__ import annotations

import dataclasses
import re
import socket
from types import MappingProxyType

import aiohttp

from signalling.client import Client
from signalling.model import SiteId
from web.app import Huishang
from web.config import CameraSettings, HuishangConfig
from web.metrics import escape_label

SAMPLE = re.compile(r'^(huishang_[a-z_]+)(?:\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$')


async def scrape(app: Huishang) -> dict[str, dict[str, float]]:
    """Metric name → {label text: value}, checking the format on the way."""
    async with aiohttp.ClientSession() as http, http.get(app.web_url + "/metrics") as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await reply.text()
    assert text.endswith("\n")
    typed: set[str] = set()
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("gauge", "counter") and name not in typed
            typed.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.match(line)
        assert match is not None, line
        name, labels, value = match.groups()
        assert name in typed, f"{name} sampled before its TYPE line"
        out.setdefault(name, {})[labels or ""] = float(value)
    return out


async def test_metrics_follow_the_conference(server: Huishang) -> None:
    before = await scrape(server)
    assert before["huishang_sites_total"][""] == len(server.config.sites)
    assert before["huishang_sites_online"][""] == 0
    assert before["huishang_floor_held"][""] == 0
    assert 'output="wall"' in before["huishang_wall_frames_total"]
    token = server.token_for(SiteId("tianhe"))
    assert token is not None
    chair = await Client.connect(server.signalling_url, token)
    try:
        await chair.request({"type": "record", "on": True})
        after = await scrape(server)
        assert after["huishang_sites_online"][""] == 1
        assert after["huishang_recording"][""] == 1
        joins = after["huishang_signalling_joins_total"][""]
        assert joins >= before["huishang_signalling_joins_total"][""] + 1
        # a street shown only in a 25-tile wall is asked for 202 lines; one offline is not
        street = server.token_for(SiteId("tianhe.zhuji"))
        assert street is not None
        zhuji = await Client.connect(server.signalling_url, street)
        tiles = [{"source": "tianhe.zhuji"}, {"source": "tianhe.liede"}]
        await chair.request({"type": "layout", "layout": {"kind": "25", "tiles": tiles}})
        limited = await scrape(server)
        await zhuji.close()
        assert limited["huishang_site_video_limit_height"] == {'site="tianhe.zhuji"': 202}
        assert limited["huishang_site_video_limit_fps"] == {'site="tianhe.zhuji"': 30}
        assert "huishang_site_video_limit_height" not in before
    finally:
        await chair.close()


async def test_cameras_are_reported_without_their_urls(demo_config: HuishangConfig) -> None:
    with socket.socket() as sock:  # a camera that is not there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"rtsp://admin:secret@127.0.0.1:{port}/cam1"
    cameras = MappingProxyType({SiteId("tianhe.cam1"): CameraSettings(rtsp_url=url)})
    app = await Huishang.open(config=dataclasses.replace(demo_config, cameras=cameras))
    try:
        metrics = await scrape(app)
        assert metrics["huishang_camera_up"] == {'site="tianhe.cam1"': 0}
        assert "huishang_uplink_up" not in metrics  # no [uplink] here
        async with aiohttp.ClientSession() as http, http.get(app.web_url + "/metrics") as r:
            text = await r.text()
        assert "secret" not in text and "rtsp://" not in text
    finally:
        await app.close()


def test_label_values_are_escaped() -> None:
    assert escape_label('天河区 "一号" \\ 摄像机\n') == '天河区 \\"一号\\" \\\\ 摄像机\\n'
