"""The recorder: the chair's record switch writes the programme or a wall output with the mixed
audio to a file in the data directory, indexed in SQLite, listed on the chair console.

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
