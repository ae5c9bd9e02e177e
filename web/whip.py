"""WHIP ingest (RFC 9725) and WHEP playback: a site token as Bearer token; a WHIP publisher
becomes that site's publication, a WHEP viewer watches a wall output or a site.

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
