"""WHIP ingest (RFC 9725) and WHEP playback (draft-ietf-wish-whep) over HTTP.

A site token is the Bearer token (RFC 6750); the token decides the site. Endpoints (the
full contract is in docs/whip.md):

=======================  =========  =====================================================
``/whip``                POST       publish as the token's site: SDP offer → 201 + answer
``/whip/{resource}``     PATCH      trickle ICE (``application/trickle-ice-sdpfrag``)
                         DELETE     end the publication
``/whep/{source}``       POST       watch *source*: a wall output (``wall``), the
                                    ``programme``, or a site id
``/whep/{source}/{res}`` PATCH      trickle ICE
                         DELETE     end the playback
(each of them)           OPTIONS    CORS preflight; ``Link`` ICE servers when authorised
=======================  =========  =====================================================

A WHIP publisher becomes its site's publication: its video and audio go into
``MediaBridge.local_sources[site]`` (found before any live session's peer), it decodes for
the wall through ``local_decoders[site]``, and the site is present in the conference through
``SignallingServer.attach_local`` (online in the roster; the chair can give it the floor and
the operator can put it on the wall). DELETE, the client vanishing (ICE/DTLS failure,
consent expiry, no connection in time) or a newer session of the same site (a terminal
logging in, a new WHIP POST) end it: unregistered, detached, re-planned.

A WHEP viewer is a relay subscriber: its slots follow its source after every routing plan
(a ``MediaBridge.listeners`` entry); ``programme`` and a wall output's audio are carried by
``MediaBridge.carry_programme``. Nothing is transcoded per viewer.

Who may do what (the roles of ``sites.toml``):

- publish (WHIP): chair, terminal, observer (cameras), uplink; not wall or operator;
- watch (WHEP) a wall output or the programme: every role;
- watch a site: chair, operator, wall, observer; a terminal or uplink gets 403.

Errors are plain text with the reason: 400 malformed SDP or fragment, 401 (with
``WWW-Authenticate: Bearer``) missing or wrong token, 403 not allowed, 404 unknown source or
resource, 412 ``If-Match`` mismatch, 415 wrong ``Content-Type``, 422 ICE restart (aiortc has
none: RFC 9725 section 4.3.1 allows trickle without restart).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import CIMultiDict

from bridge.errors import BridgeError, OfferError
from bridge.publication import Publication
from bridge.whip_peer import (
    IngestConfig,
    WhepViewer,
    WhipPublisher,
    parse_trickle_fragment,
)
from signalling.media import MediaBridge
from signalling.model import Role, SessionId, SiteId
from signalling.routing import RoutingPlan
from web.gateway import Gateway

if TYPE_CHECKING:
    from web.app import Huishang

__all__ = [
    "PROGRAMME",
    "PUBLISH_ROLES",
    "WATCH_ANY_ROLES",
    "WhipGateway",
    "start",
]

logger = logging.getLogger(__name__)

#: The WHEP source that is the conference programme (floor holder or chair, with its audio).
PROGRAMME = "programme"
#: Roles whose token may publish over WHIP.
PUBLISH_ROLES = frozenset({Role.CHAIR, Role.TERMINAL, Role.OBSERVER, Role.UPLINK})
#: Roles whose token may watch any site over WHEP (the others: wall outputs and programme).
WATCH_ANY_ROLES = frozenset({Role.CHAIR, Role.OPERATOR, Role.WALL, Role.OBSERVER})
#: Sites of these roles show no video of their own: not a WHEP source.
_NO_VIDEO_ROLES = frozenset({Role.WALL, Role.OPERATOR})

SDP = "application/sdp"
TRICKLE = "application/trickle-ice-sdpfrag"
MAX_BODY = 64 * 1024
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Patch, WWW-Authenticate",
}


class _HttpError(Exception):
    """An HTTP error answer: status, plain-text reason, extra headers."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _answering(handler: Handler) -> Handler:
    """The one place that turns errors into HTTP answers (plain text, CORS headers)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _HttpError as exc:
            headers = {**_CORS, **exc.headers}
            return web.Response(status=exc.status, text=exc.reason + "\n", headers=headers)
        except web.HTTPException:
            raise
        except Exception:
            logger.exception("%s %s failed", request.method, request.path)
            return web.Response(
                status=500, text="internal error; the server logged it\n", headers=_CORS
            )

    return wrapped


@dataclasses.dataclass(eq=False)
class _Ingest:
    id: str
    site: SiteId
    publisher: WhipPublisher
    etag: str
    sources: dict[str, Publication] = dataclasses.field(default_factory=dict)
    session: SessionId | None = None
    ended: bool = False


@dataclasses.dataclass(eq=False)
class _View:
    id: str
    site: SiteId  # the viewer's own site
    source: str
    viewer: WhepViewer
    etag: str
    programme_key: str | None = None
    watches_site: bool = False  # Conference.want_source keeps the watched site un-paused
    ended: bool = False


class WhipGateway:
    """The WHIP and WHEP resources of one server (see the module docstring)."""

    def __init__(self, app: Huishang, media: MediaBridge, config: IngestConfig) -> None:
        self.app = app
        self.media = media
        self.config = config
        self.ingests: dict[str, _Ingest] = {}  # resource id → ingest
        self.views: dict[str, _View] = {}  # resource id → view
        self._by_site: dict[SiteId, _Ingest] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        media.listeners.append(self._on_plan)

    def add_routes(self, aio: web.Application) -> None:
        router = aio.router
        router.add_post("/whip", _answering(self._whip_post))
        router.add_route("OPTIONS", "/whip", _answering(self._options))
        router.add_patch("/whip/{resource}", _answering(self._whip_patch))
        router.add_delete("/whip/{resource}", _answering(self._whip_delete))
        router.add_route("OPTIONS", "/whip/{resource}", _answering(self._options))
        router.add_post("/whep/{source}", _answering(self._whep_post))
        router.add_route("OPTIONS", "/whep/{source}", _answering(self._options))
        router.add_patch("/whep/{source}/{resource}", _answering(self._whep_patch))
        router.add_delete("/whep/{source}/{resource}", _answering(self._whep_delete))
        router.add_route("OPTIONS", "/whep/{source}/{resource}", _answering(self._options))

    # -- common ---------------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> SiteId:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _HttpError(
                401,
                "a site token is required: Authorization: Bearer <token>",
                {"WWW-Authenticate": 'Bearer realm="huishang"'},
            )
        site = self.app.authenticate(token.strip())
        if site is None or site not in self.app.conference.sites:
            raise _HttpError(
                401,
                "unknown or revoked token",
                {"WWW-Authenticate": 'Bearer realm="huishang", error="invalid_token"'},
            )
        return site

    def _link_headers(self) -> list[str]:
        """ICE servers as ``Link`` header values (RFC 9725 section 4.6)."""
        links = []
        for server in self.app.config.ice.servers:
            for url in server.urls:
                value = f'<{url}>; rel="ice-server"'
                if server.username is not None:
                    value += f'; username="{_quoted(server.username)}"'
                if server.credential is not None:
                    value += f'; credential="{_quoted(server.credential)}"'
                    value += '; credential-type="password"'
                links.append(value)
        return links

    async def _read_body(self, request: web.Request, content_type: str, accept: str) -> str:
        if request.content_type != content_type:
            given = request.content_type or "none"
            raise _HttpError(
                415,
                f"Content-Type must be {content_type} (got {given})",
                {accept: content_type},
            )
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise _HttpError(413, f"the body exceeds {MAX_BODY} bytes")
        body = await request.read()
        if len(body) > MAX_BODY:
            raise _HttpError(413, f"the body exceeds {MAX_BODY} bytes")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise _HttpError(400, "the body is not UTF-8 text") from None

    def _created(self, answer: str, location: str, etag: str) -> web.Response:
        headers: CIMultiDict[str] = CIMultiDict(_CORS)
        headers["Location"] = location
        headers["ETag"] = etag
        headers["Accept-Patch"] = TRICKLE
        for link in self._link_headers():
            headers.add("Link", link)
        return web.Response(status=201, text=answer, content_type=SDP, headers=headers)

    async def _options(self, request: web.Request) -> web.Response:
        headers: CIMultiDict[str] = CIMultiDict(_CORS)
        if "resource" in request.match_info:
            allow = "OPTIONS, PATCH, DELETE"
            headers["Accept-Patch"] = TRICKLE
        else:
            allow = "OPTIONS, POST"
            headers["Accept-Post"] = SDP
        headers["Allow"] = allow
        headers["Access-Control-Allow-Methods"] = allow
        headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, If-Match"
        if request.headers.get("Authorization"):  # a preflight carries none
            self._authenticate(request)
            for link in self._link_headers():
                headers.add("Link", link)
        return web.Response(status=204, headers=headers)

    async def _patch(
        self, request: web.Request, etag: str, peer: WhipPublisher | WhepViewer
    ) -> web.Response:
        """Trickle ICE into *peer* (RFC 9725 section 4.3.1); ICE restarts are refused."""
        text = await self._read_body(request, TRICKLE, "Accept-Patch")
        match = request.headers.get("If-Match")
        if match is not None and match.strip() not in ("*", etag):
            raise _HttpError(412, f"If-Match {match} does not match the ICE session {etag}")
        try:
            fragment = parse_trickle_fragment(text)
        except ValueError as exc:
            raise _HttpError(400, f"not a trickle-ice-sdpfrag: {exc}") from None
        restart = fragment.ufrag is not None and fragment.ufrag != peer.remote_ufrag
        if restart or (match is not None and match.strip() == "*"):
            raise _HttpError(
                422,
                "ICE restart is not supported by this server (aiortc has none); "
                "DELETE this session and POST a new offer",
            )
        try:
            for candidate in fragment.candidates:
                await peer.add_ice_candidate(candidate)
            if fragment.end:
                await peer.add_ice_candidate(None)
        except BridgeError as exc:
            raise _HttpError(400, str(exc)) from None
        return web.Response(status=204, headers=_CORS)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- WHIP -----------------------------------------------------------------------------

    async def _whip_post(self, request: web.Request) -> web.Response:
        site_id = self._authenticate(request)
        site = self.app.conference.sites[site_id]
        if site.role not in PUBLISH_ROLES:
            raise _HttpError(403, f"a {site.role.value} site may not publish")
        offer = await self._read_body(request, SDP, "Accept-Post")
        if self.closed:
            raise _HttpError(503, "the server is shutting down")
        resource = secrets.token_urlsafe(12)
        holder: list[_Ingest] = []
        publisher = WhipPublisher(
            f"whip-{site_id}-{resource[:6]}",
            self.media.relay,
            peer_config=self.media.peer_config,
            config=self.config,
            on_vanish=lambda reason: self._spawn(self._end_ingest(holder[0], reason)),
        )
        ingest = _Ingest(resource, site_id, publisher, _etag())
        holder.append(ingest)
        try:
            answer = await publisher.answer(offer)
        except OfferError as exc:
            await publisher.close("refused offer")
            raise _HttpError(400, f"bad SDP offer: {exc.reason}") from None
        except BaseException:
            await publisher.close("failed")
            raise
        if ingest.ended or self.closed:  # vanished meanwhile, or the server is stopping
            await publisher.close("ended before it was published")
            raise _HttpError(503, "the session ended before it could be published; retry")
        old = self._by_site.get(site_id)
        if old is not None:  # the site's newest publisher wins (a restarted encoder)
            await self._end_ingest(old, "replaced by a newer WHIP session of the site")
        self.ingests[resource] = ingest
        self._by_site[site_id] = ingest
        ingest.sources = dict(publisher.publications)
        self.media.local_sources[site_id] = ingest.sources
        self.media.local_decoders[site_id] = publisher
        ingest.session = self.app.signalling.attach_local(site_id)
        self.media.apply(self.app.conference.plan)
        codecs = ", ".join(f"{k} {c}" for k, c in sorted(publisher.codecs.items()))
        logger.info("WHIP %s: %s (%s) publishes %s", resource, site_id, site.name, codecs)
        return self._created(answer, f"/whip/{resource}", ingest.etag)

    def _ingest_of(self, request: web.Request) -> _Ingest:
        site_id = self._authenticate(request)
        ingest = self.ingests.get(request.match_info["resource"])
        if ingest is None:
            raise _HttpError(404, "no such WHIP session (ended, or never made)")
        if ingest.site != site_id:
            raise _HttpError(403, "this WHIP session belongs to another site")
        return ingest

    async def _whip_patch(self, request: web.Request) -> web.Response:
        ingest = self._ingest_of(request)
        return await self._patch(request, ingest.etag, ingest.publisher)

    async def _whip_delete(self, request: web.Request) -> web.Response:
        ingest = self._ingest_of(request)
        await self._end_ingest(ingest, "DELETE by the client")
        return web.Response(status=200, text="ended\n", headers=_CORS)

    async def _end_ingest(self, ingest: _Ingest, reason: str) -> None:
        """Unregister, detach and close one ingest (idempotent)."""
        if ingest.ended:
            return
        ingest.ended = True
        if self.ingests.get(ingest.id) is ingest:
            del self.ingests[ingest.id]
        if self._by_site.get(ingest.site) is ingest:
            del self._by_site[ingest.site]
        media = self.media
        if media.local_sources.get(ingest.site) is ingest.sources:
            del media.local_sources[ingest.site]
        if media.local_decoders.get(ingest.site) is ingest.publisher:
            del media.local_decoders[ingest.site]
        logger.info("WHIP %s: %s ends (%s)", ingest.id, ingest.site, reason)
        try:
            await ingest.publisher.close(reason)
        finally:
            if ingest.session is not None:
                await self.app.signalling.detach_local(ingest.session)
            media.apply(self.app.conference.plan)

    # -- WHEP -----------------------------------------------------------------------------

    async def _whep_post(self, request: web.Request) -> web.Response:
        site_id = self._authenticate(request)
        viewer_site = self.app.conference.sites[site_id]
        source = request.match_info["source"]
        conference = self.app.conference
        is_output = source in conference.config.outputs
        if not is_output and source != PROGRAMME:
            shown = conference.sites.get(SiteId(source))
            if shown is None or shown.role in _NO_VIDEO_ROLES:
                raise _HttpError(404, f"no source {source!r}: a wall output, programme or site")
            if viewer_site.role not in WATCH_ANY_ROLES:
                raise _HttpError(
                    403,
                    f"a {viewer_site.role.value} site may watch the wall outputs and the "
                    "programme, not a single site",
                )
        offer = await self._read_body(request, SDP, "Accept-Post")
        if self.closed:
            raise _HttpError(503, "the server is shutting down")
        resource = secrets.token_urlsafe(12)
        holder: list[_View] = []
        viewer = WhepViewer(
            f"whep-{site_id}-{resource[:6]}",
            self.media.relay,
            peer_config=self.media.peer_config,
            config=self.config,
            on_vanish=lambda reason: self._spawn(self._end_view(holder[0], reason)),
        )
        view = _View(resource, site_id, source, viewer, _etag())
        holder.append(view)
        try:
            answer = await viewer.answer(offer)
        except OfferError as exc:
            await viewer.close("refused offer")
            raise _HttpError(400, f"bad SDP offer: {exc.reason}") from None
        except BaseException:
            await viewer.close("failed")
            raise
        if view.ended or self.closed:
            await viewer.close("ended before it could play")
            raise _HttpError(503, "the session ended before it could play; retry")
        self.views[resource] = view
        if source == PROGRAMME or is_output:
            # the programme's audio (chair + floor, minus the viewer), and for the programme
            # its video too, follow the conference like a terminal's
            view.programme_key = f"whep-{resource}"
            self.app.signalling.deliver(conference.want_programme(view.programme_key, True))
            self.media.carry_programme(
                view.programme_key,
                video=viewer.video if source == PROGRAMME else None,
                audio=viewer.audio,
                minus=site_id,
            )
        else:  # one site: it must not be paused while only this viewer watches it
            view.watches_site = True
            outcome = conference.want_source(f"whep-{resource}", SiteId(source), True)
            self.app.signalling.deliver(outcome)
        self._route(view)
        logger.info("WHEP %s: %s watches %s", resource, site_id, source)
        return self._created(answer, f"/whep/{source}/{resource}", view.etag)

    def _view_of(self, request: web.Request) -> _View:
        site_id = self._authenticate(request)
        view = self.views.get(request.match_info["resource"])
        if view is None or view.source != request.match_info["source"]:
            raise _HttpError(404, "no such WHEP session (ended, or never made)")
        if view.site != site_id:
            raise _HttpError(403, "this WHEP session belongs to another site")
        return view

    async def _whep_patch(self, request: web.Request) -> web.Response:
        view = self._view_of(request)
        return await self._patch(request, view.etag, view.viewer)

    async def _whep_delete(self, request: web.Request) -> web.Response:
        view = self._view_of(request)
        await self._end_view(view, "DELETE by the client")
        return web.Response(status=200, text="ended\n", headers=_CORS)

    async def _end_view(self, view: _View, reason: str) -> None:
        if view.ended:
            return
        view.ended = True
        if self.views.get(view.id) is view:
            del self.views[view.id]
        logger.info("WHEP %s: %s stops watching %s (%s)", view.id, view.site, view.source, reason)
        if view.programme_key is not None:
            self.media.drop_programme(view.programme_key)
            outcome = self.app.conference.want_programme(view.programme_key, False)
            self.app.signalling.deliver(outcome)
        if view.watches_site:
            source = SiteId(view.source)
            outcome = self.app.conference.want_source(f"whep-{view.id}", source, False)
            self.app.signalling.deliver(outcome)
        await view.viewer.close(reason)

    # -- following the plan ---------------------------------------------------------------

    def _route(self, view: _View) -> None:
        """Point a view's slots at its source (the programme's are carried by the media)."""
        if view.source == PROGRAMME:
            return
        video = self.media.publication(view.source, "video")
        if view.source in self.app.conference.config.outputs:
            view.viewer.route_video(video)  # its audio is the programme's (carry_programme)
            return
        view.viewer.route(video, self.media.publication(view.source, "audio"))

    def _on_plan(self, plan: RoutingPlan) -> None:
        """After every plan: mute muted WHIP sites, follow sources, notice replaced ingests."""
        conference = self.app.conference
        muted = conference.audio_muted()
        for ingest in tuple(self.ingests.values()):
            audio = ingest.sources.get("audio")
            if audio is not None:
                audio.muted = ingest.site in muted
            if ingest.session is not None and conference.live_session(ingest.site) != (
                ingest.session
            ):
                reason = "replaced by a newer session of the site"
                self._spawn(self._end_ingest(ingest, reason))
        for view in tuple(self.views.values()):
            if not view.ended:
                self._route(view)

    async def close(self) -> None:
        """End every WHIP and WHEP session (idempotent)."""
        if self.closed:
            return
        self.closed = True
        if self._on_plan in self.media.listeners:
            self.media.listeners.remove(self._on_plan)
        for ingest in tuple(self.ingests.values()):
            await self._end_ingest(ingest, "server shutting down")
        for view in tuple(self.views.values()):
            await self._end_view(view, "server shutting down")
        for task in tuple(self._tasks):
            task.cancel()


def _etag() -> str:
    return f'"{secrets.token_hex(8)}"'


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


async def start(app: Huishang, aio: web.Application) -> Gateway:
    """Add the WHIP and WHEP routes (called by :mod:`web.app`)."""
    if app.media is None:
        raise RuntimeError("WHIP/WHEP needs the media plane")
    gateway = WhipGateway(app, app.media, IngestConfig())
    gateway.add_routes(aio)
    return gateway
