"""The server's gateways to other systems (ARCHITECTURE.md, bridge/ gateways; issue 5): the
recorder, RTSP camera ingest, WHIP / WHEP, the cascade uplink.

Each lives in its own module of :mod:`web` that has one entry point::

    async def start(app: Huishang, aio: aiohttp.web.Application) -> Gateway

called by the composition root (:mod:`web.app`) once the media plane and the wall outputs are
up and before the web listener starts, so a gateway may add its routes to *aio*. The app closes
the gateways, newest first, before it closes the wall outputs and the media plane.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

if TYPE_CHECKING:
    from web.app import Huishang

__all__ = ["Gateway", "GatewayStart"]


class Gateway(Protocol):
    """A started gateway: the app closes it at shutdown (idempotent, never raises)."""

    async def close(self) -> None: ...


#: A gateway module's ``start(app, aio)``.
GatewayStart = Callable[["Huishang", web.Application], Awaitable[Gateway]]
