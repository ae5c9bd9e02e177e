"""RTSP camera ingest (视频图像接入): camera sites in sites.toml are pulled with PyAV only while
something shows them, transcoded once to VP8, reconnected with backoff.

Not built yet (issue 5): :func:`start` starts nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from web.gateway import Gateway

if TYPE_CHECKING:
    from web.app import Huishang

__all__ = ["start"]


class _NotBuilt:
    async def close(self) -> None:
        return None


async def start(app: Huishang, aio: web.Application) -> Gateway:
    return _NotBuilt()
