"""The cascade uplink (级联) gateway: this server joins an upper-level Huishang as its uplink
site, publishes its programme there and brings the upper level's programme in as a source.

Wiring only; the link itself is :class:`signalling.uplink.Uplink` (protocol, reconnects,
routing) over :class:`bridge.uplink_peer.UplinkPeer` (media). :func:`start` reads the
``[uplink]`` table of huishang.toml (:class:`web.config.UplinkSettings`): no table, no uplink.

- TLS for a ``wss://`` upper server: the system's trust store, or only the CA(s) in ``ca_file``
  when given (the upper server's own self-signed certificate works as one); hostnames are
  checked. ``verify = false`` checks nothing (testing only, logged loudly).
- ``publish = "wall"`` sends the wall output ``output``; it must be one of this server's
  outputs (checked at start: :class:`~web.config.ConfigError` naming ``uplink.output``).
- ``GET /api/uplink``: the link's state as JSON (``{"configured": false}`` without one): state
  (``connecting`` / ``up`` / ``waiting`` / ``closed``), since, the upper URL and our site
  there, what the upper level shows us, reconnect counters, the last error, the seconds to
  the next retry, the upper level's pause requests, who holds the floor upstairs (and whether
  it is us), our hand and mute state there, packets sent up and received down.
- ``POST /api/uplink/hand`` ``{"up": true|false}``, chair only (its token as ``?token=`` or
  ``Authorization: Bearer``): raise or lower this server's hand at the upper level (举手申请发言).
- ``POST /api/uplink/rollcall_ack``, chair only: answer the upper level's roll call (到) for
  this server while it is called (``rollcall_called`` in the status).
  Both: 401 without a token, 403 for another role, 503 while the link is down, 409 when the
  upper level refuses (its error code and message in the body), 504 without a reply.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from signalling.client import ClientError
from signalling.model import Role
from signalling.uplink import Uplink, UplinkConfig
from web.config import ConfigError, UplinkPublish, UplinkSettings
from web.gateway import Gateway

if TYPE_CHECKING:
    from web.app import Huishang

__all__ = ["start", "uplink_config"]

logger = logging.getLogger(__name__)


class _NoUplink:
    async def close(self) -> None:
        return None


def uplink_config(settings: UplinkSettings, outputs: list[str], config_path: str) -> UplinkConfig:
    """The signalling package's config for *settings* (TLS context made here)."""
    context: ssl.SSLContext | None = None
    if settings.url.startswith("wss://"):
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file else None
        )
        if not settings.verify:
            logger.warning("uplink: TLS certificate checks are OFF (verify = false): testing only")
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    output: str | None = None
    if settings.publish is UplinkPublish.WALL:
        if settings.output not in outputs:
            raise ConfigError(
                Path(config_path),
                "uplink.output",
                f"no wall output {settings.output!r} (this server has: {', '.join(outputs)})",
            )
        output = settings.output
    return UplinkConfig(
        url=settings.url,
        token=settings.token,
        site=settings.site,
        publish_output=output,
        ssl=context,
        retry_min_s=settings.retry_min_s,
        retry_max_s=settings.retry_max_s,
    )


def _require_chair(app: Huishang, request: web.Request) -> None:
    token = request.query.get("token", "")
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        token = header.removeprefix("Bearer ").strip()
    site = app.authenticate(token) if token else None
    if site is None:
        raise web.HTTPUnauthorized(text="a chair token is required (?token= or Bearer)")
    if app.conference.sites[site].role is not Role.CHAIR:
        raise web.HTTPForbidden(text="only the chair may speak for this server upstairs")


async def start(app: Huishang, aio: web.Application) -> Gateway:
    settings = app.config.uplink
    if settings is None or app.media is None:

        async def no_uplink(request: web.Request) -> web.Response:
            return web.json_response({"configured": False})

        aio.router.add_get("/api/uplink", no_uplink)
        return _NoUplink()
    outputs = list(app.conference.config.outputs)
    if settings.site in app.config.token_hashes:
        logger.warning(
            "uplink: site %s has a token_hash in %s; a login with that token would replace "
            "the upper level's programme here (the uplink needs no token for it)",
            settings.site,
            app.config.sites_path.name,
        )
    uplink = Uplink(
        uplink_config(settings, outputs, str(app.config.path)),
        app.media,
        app.signalling,
        peer_config=app.media.peer_config,
    )

    async def status(request: web.Request) -> web.Response:
        return web.json_response(uplink.status())

    async def hand(request: web.Request) -> web.Response:
        _require_chair(app, request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("up"), bool):
            raise web.HTTPBadRequest(text='send {"up": true} or {"up": false}')
        return await upstairs({"type": "hand", "up": body["up"]}, {"hand": body["up"]})

    async def rollcall_ack(request: web.Request) -> web.Response:
        """The chair answers the upper level's roll call (到) for this server."""
        _require_chair(app, request)
        return await upstairs({"type": "rollcall_ack"}, {"acked": True})

    async def upstairs(message: dict[str, object], result: dict[str, object]) -> web.Response:
        try:
            await uplink.request(message)
        except ClientError as exc:
            # not linked now: 503; the upper level refused (e.g. not called): 409, its code
            status = 503 if exc.code in ("not_connected", "closed") else 409
            return web.json_response({"code": exc.code, "message": exc.message}, status=status)
        except TimeoutError:
            return web.json_response({"code": "timeout", "message": "no reply"}, status=504)
        return web.json_response({"ok": True, **result})

    aio.router.add_get("/api/uplink", status)
    aio.router.add_post("/api/uplink/hand", hand)
    aio.router.add_post("/api/uplink/rollcall_ack", rollcall_ack)
    uplink.start()
    return uplink
