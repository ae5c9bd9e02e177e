"""RTSP camera ingest (视频图像接入): camera sites in sites.toml are pulled with PyAV only while
something shows them, transcoded once to VP8, reconnected with backoff (:mod:`bridge.camera`).

"Shows them" follows the conference's routing plan: a camera site in ``plan.video_needed``
(a wall tile, the floor, a chair's preview) or ``plan.upcoming`` (a poll's next source) is
pulled; any other camera is idle. While a camera is pulled its publication is registered in
``MediaBridge.local_sources`` and its decoded frames in ``MediaBridge.local_decoders`` under
the camera's site id, so slots and wall feeds find it like a connected terminal; the plan is
applied again whenever that registration changes.

``GET /api/cameras`` lists every camera's state for the status page, without a token like
``GET /api/status``::

    {"time": 1764400000.0, "cameras": [{"site": "tianhe.cam1", "name": "天河路口监控",
      "state": "retrying", "reason": "connection refused", "since": 1764399990.5,
      "attempts": 3, "fps": 0.0, "width": 0, "height": 0, "transport": "tcp",
      "url": "rtsp://127.0.0.1:8554/cam1"}]}

URLs are shown without credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING

from aiohttp import web

from bridge.camera import CameraConfig, RtspCamera, public_url
from signalling.media import MediaBridge
from signalling.model import SiteId
from signalling.routing import RoutingPlan
from web.gateway import Gateway

if TYPE_CHECKING:
    from web.app import Huishang

__all__ = ["CameraGateway", "start"]

logger = logging.getLogger(__name__)


class CameraGateway:
    """Every configured camera, pulled on demand (see the module docstring)."""

    def __init__(self, app: Huishang, media: MediaBridge) -> None:
        self.app = app
        self.media = media
        self.cameras: dict[str, RtspCamera] = {}
        self.names: dict[str, str] = {}
        self._registered: set[str] = set()
        self._reapply: asyncio.Handle | None = None
        self.closed = False
        for site_id, settings in app.config.cameras.items():
            try:
                name = app.config.site(site_id).name
            except KeyError:
                name = site_id
            camera = RtspCamera(
                site_id,
                CameraConfig(url=settings.rtsp_url, transport=settings.rtsp_transport),
                relay_config=media.relay.config,
                on_change=self._on_change,
            )
            media.relay.add_publication(camera.publication)
            self.cameras[site_id] = camera
            self.names[site_id] = name

    def start(self) -> None:
        """Follow every plan from now on."""
        for camera in self.cameras.values():
            self._on_change(camera)  # the roster shows each camera's state from the start
        self.media.listeners.append(self.on_plan)
        self.on_plan(self.app.conference.plan)

    def _on_change(self, camera: RtspCamera) -> None:
        """A camera's state changed (on the loop, maybe inside :meth:`on_plan`): tell the
        roster with a site event, from a fresh call so the media plane is not re-entered."""
        if not self.closed and SiteId(camera.id) in self.app.conference.sites:
            asyncio.get_running_loop().call_soon(self._report, SiteId(camera.id))

    def _report(self, site: SiteId) -> None:
        camera = self.cameras.get(site)
        if camera is not None and not self.closed:
            outcome = self.app.conference.set_camera(site, camera.state.value)
            self.app.signalling.deliver(outcome)

    def on_plan(self, plan: RoutingPlan) -> None:
        """Pull exactly the cameras the plan shows; (un)register them as local sources."""
        if self.closed:
            return
        wanted = plan.video_needed | plan.upcoming
        changed = False
        for site_id, camera in self.cameras.items():
            pull = site_id in wanted
            camera.want(pull)
            if pull and site_id not in self._registered:
                self.media.local_sources[site_id] = {"video": camera.publication}
                self.media.local_decoders[site_id] = camera
                self._registered.add(site_id)
                changed = True
            elif not pull and site_id in self._registered:
                self._unregister(site_id, camera)
                changed = True
        if changed and self._reapply is None:
            # not from inside this listener: the media plane is still walking its listeners
            self._reapply = asyncio.get_running_loop().call_soon(self._apply_again)

    def _apply_again(self) -> None:
        self._reapply = None
        if not self.closed:
            self.media.apply(self.app.conference.plan)

    def _unregister(self, site_id: str, camera: RtspCamera) -> None:
        self._registered.discard(site_id)
        if self.media.local_sources.get(site_id, {}).get("video") is camera.publication:
            del self.media.local_sources[site_id]
        if self.media.local_decoders.get(site_id) is camera:
            del self.media.local_decoders[site_id]

    def snapshot(self) -> list[dict[str, object]]:
        """Every camera's state, in the directory's order."""
        out: list[dict[str, object]] = []
        for site_id, camera in self.cameras.items():
            status = camera.status()
            out.append(
                {
                    "site": site_id,
                    "name": self.names[site_id],
                    "state": status.state.value,
                    "reason": status.reason,
                    "since": status.since,
                    "attempts": status.attempts,
                    "fps": status.fps,
                    "width": status.width,
                    "height": status.height,
                    "transport": camera.config.transport,
                    "url": public_url(camera.config.url),
                }
            )
        return out

    async def handle_list(self, request: web.Request) -> web.Response:
        """``GET /api/cameras``."""
        return web.json_response(
            {"time": time.time(), "cameras": self.snapshot()},
            dumps=_dumps,
        )

    async def close(self) -> None:
        """Stop pulling, unregister and close every camera (idempotent, never raises)."""
        if self.closed:
            return
        self.closed = True
        if self._reapply is not None:
            self._reapply.cancel()
            self._reapply = None
        if self.on_plan in self.media.listeners:
            self.media.listeners.remove(self.on_plan)
        for site_id, camera in self.cameras.items():
            self._unregister(site_id, camera)
            self.media.relay.remove_publication(camera.publication)
        for camera in self.cameras.values():
            try:
                await camera.close()
            except Exception:
                logger.exception("closing camera %s failed", camera.id)


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)


async def start(app: Huishang, aio: web.Application) -> Gateway:
    """Create one :class:`~bridge.camera.RtspCamera` per configured camera, route
    ``GET /api/cameras``, and pull cameras as the conference's plans ask."""
    media = app.media
    assert media is not None, "the media plane starts before the gateways"
    gateway = CameraGateway(app, media)
    aio.router.add_get("/api/cameras", gateway.handle_list)
    gateway.start()
    return gateway
