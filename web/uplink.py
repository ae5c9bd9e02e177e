"""The cascade uplink (级联): this server joins an upper-level Huishang as its uplink site,
publishes the district programme and brings the upper level's programme in as a source.

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
