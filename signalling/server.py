"""The websockets adapter around :class:`~signalling.conference.Conference` (PROTOCOL.md).

It only moves bytes: authenticate the ``hello``, feed each request to the conference, send the
outcome's messages, close replaced sessions, hand facts to the persistence hook and media
requests to the media plane. One place, :meth:`SignallingServer._refuse`, turns exceptions into
``error`` frames.

Size limits: frames up to ``max_frame_bytes`` (256 KiB) are accepted; larger frames up to
``hard_frame_bytes`` are answered ``too_large`` and the connection stays usable; beyond that
the websockets layer closes the connection with 1009 (message too big), since nobody should
have to buffer an unbounded frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from . import messages as m
from .conference import Conference, Fact, Outcome
from .errors import BadRequest, Conflict, NotFound, RateLimited, SignallingError, error_code
from .model import SessionId, Site, SiteId
from .routing import RoutingPlan

__all__ = [
    "CLOSE_UNAUTHORIZED",
    "MediaPlane",
    "ServerConfig",
    "SignallingServer",
]

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
#: A connection whose unsent data grows past this is too slow to keep up: it is closed.
SLOW_CLIENT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 0
    max_frame_bytes: int = m.MAX_FRAME_BYTES
    hard_frame_bytes: int = 4 * 1024 * 1024
    rate_per_s: float = 30.0  # sustained messages per second per session
    rate_burst: int = 60
    hello_timeout_s: float = 10.0
    tick_interval_s: float = 0.25
    ice_servers: tuple[Mapping[str, Any], ...] = ()
    ssl: ssl.SSLContext | None = field(default=None, compare=False)


class MediaPlane(Protocol):
    """What the server needs of the media plane (the relay issue wires bridge/ in here)."""

    async def offer(self, session: SessionId, site: Site, sdp: str) -> tuple[str, dict[str, str]]:
        """Answer an SDP offer: the answer SDP and ``{mid: slot name}``."""
        ...

    async def candidate(self, session: SessionId, candidate: Mapping[str, Any] | None) -> None: ...

    async def close_session(self, session: SessionId) -> None: ...

    def apply(self, plan: RoutingPlan) -> None:
        """Route every slot as the conference's plan says (called after every change)."""
        ...


def _rate_limited(frame: str | bytes) -> RateLimited:
    """The refusal of a frame over the rate limit, answering its ``id`` when it has one."""
    re = None
    if isinstance(frame, str) and len(frame) <= m.MAX_FRAME_BYTES:
        with contextlib.suppress(ValueError, RecursionError):
            obj = json.loads(frame)
            if isinstance(obj, dict) and isinstance(obj.get("id"), str | int):
                re = obj["id"]
    return RateLimited("slow down: too many messages", re=re)


class _TokenBucket:
    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, float(burst), float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class _SessionLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"[{extra.get('site', '-')} {extra.get('session', '-')}] {msg}", kwargs


class SignallingServer:
    """Serves the protocol for one conference on a websockets listener."""

    def __init__(
        self,
        conference: Conference,
        config: ServerConfig,
        authenticate: Callable[[str], SiteId | None],
        *,
        on_facts: Callable[[Sequence[Fact]], None] | None = None,
        media: MediaPlane | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conference = conference
        self.config = config
        self.authenticate = authenticate
        self._on_facts = on_facts
        self._media = media
        self._clock = clock
        self._connections: dict[SessionId, ServerConnection] = {}
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.stats = {"joins": 0, "frames_in": 0, "errors": 0}

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(
            self._serve,
            self.config.host,
            self.config.port,
            ssl=self.config.ssl,
            max_size=self.config.hard_frame_bytes,
            max_queue=64,
            open_timeout=self.config.hello_timeout_s,
            compression=None,
        )
        self._ticker = asyncio.create_task(self._tick_forever(), name="conference-tick")

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the signalling listener is not running")
        sockets = tuple(self._server.sockets)
        if not sockets:
            raise RuntimeError("the signalling listener is closing")
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        scheme = "wss" if self.config.ssl is not None else "ws"
        return f"{scheme}://{self.config.host}:{self.port}/"

    async def close(self) -> None:
        """Stop listening and close every session (idempotent)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._server is not None:
            server, self._server = self._server, None  # not running from now on (/api/info: 503)
            server.close()
            await server.wait_closed()

    # -- one connection ---------------------------------------------------------------------

    async def _serve(self, ws: ServerConnection) -> None:
        log = _SessionLog(logger, {"site": "-", "session": "-"})
        session = await self._welcome(ws, log)
        if session is None:
            return
        site = self.conference.session_site(session)
        log = _SessionLog(logger, {"site": site.id, "session": session})
        bucket = _TokenBucket(self.config.rate_per_s, self.config.rate_burst, time.monotonic())
        left = False
        try:
            async for frame in ws:
                self.stats["frames_in"] += 1
                if not self.conference.is_live(session):
                    break  # replaced meanwhile
                if not bucket.take(time.monotonic()):
                    self._reply(ws, self._refuse(_rate_limited(frame), log))
                    continue
                request: m.Request | None = None
                try:
                    request = self._parse(frame)
                    if isinstance(request, m.Leave):
                        self._reply(ws, m.ok(request.id))
                        left = True
                        break
                    await self._dispatch(ws, session, request)
                except Exception as exc:  # every failure becomes an error frame
                    self._reply(ws, self._refuse(exc, log, request))
        except ConnectionClosed:
            pass
        finally:
            await self._end(ws, session, left, log)

    async def _welcome(
        self, ws: ServerConnection, log: logging.LoggerAdapter[Any]
    ) -> SessionId | None:
        """Wait for a valid ``hello``; refuse anything else (recoverably) until then."""
        deadline = time.monotonic() + self.config.hello_timeout_s
        bucket = _TokenBucket(self.config.rate_per_s, self.config.rate_burst, time.monotonic())
        while True:
            try:
                frame = await asyncio.wait_for(ws.recv(), max(0.0, deadline - time.monotonic()))
            except (TimeoutError, ConnectionClosed):
                with contextlib.suppress(ConnectionClosed):
                    await ws.close(1008, "no hello in time")
                return None
            if not bucket.take(time.monotonic()):
                self._reply(ws, self._refuse(_rate_limited(frame), log))
                continue
            try:
                request = self._parse(frame)
                if not isinstance(request, m.Hello):
                    raise BadRequest("send hello first", re=request.id)
                if request.protocol != m.PROTOCOL_VERSION:
                    raise BadRequest(
                        f"protocol {request.protocol} is not supported; this server speaks "
                        f"{m.PROTOCOL_VERSION}",
                        re=request.id,
                    )
            except Exception as exc:
                self._reply(ws, self._refuse(exc, log))
                continue
            site_id = self.authenticate(request.token)
            if site_id is None or site_id not in self.conference.sites:
                log.info("refused a hello with an unknown token from %s", ws.remote_address)
                self._reply(ws, m.error(request.id, "unauthorized", "unknown or revoked token"))
                with contextlib.suppress(ConnectionClosed):
                    await ws.close(CLOSE_UNAUTHORIZED, "unauthorized")
                return None
            return self._join(ws, site_id, request)

    def _join(self, ws: ServerConnection, site_id: SiteId, hello: m.Hello) -> SessionId:
        session = SessionId(secrets.token_hex(8))
        now = self._clock()
        outcome = self.conference.join(site_id, session, now)
        self._connections[session] = ws
        site = self.conference.sites[site_id]
        welcome: dict[str, Any] = {
            "type": "welcome",
            "protocol": m.PROTOCOL_VERSION,
            "session": session,
            "site": {
                "id": site.id,
                "name": site.name,
                "level": site.level.value,
                "role": site.role.value,
                "parent": site.parent,
            },
            "ice_servers": [dict(s) for s in self.config.ice_servers],
            "conference": self.conference.snapshot(),
        }
        if hello.id is not None:
            welcome["re"] = hello.id
        self._reply(ws, welcome)
        self.stats["joins"] += 1
        logger.info("%s (%s) joined as session %s [%s]", site.id, site.name, session, hello.client)
        self._apply(outcome)
        return session

    async def _dispatch(self, ws: ServerConnection, session: SessionId, request: m.Request) -> None:
        now = self._clock()
        match request:
            case m.Ping(id=re):
                self._reply(ws, m.ok(re, time=now))
            case m.Hello():
                raise Conflict("already welcomed; a session says hello once", re=request.id)
            case m.Offer(sdp=sdp, id=re):
                if self._media is None:
                    raise Conflict("this server runs without a media plane", re=re)
                site = self.conference.session_site(session)
                answer, slots = await self._media.offer(session, site, sdp)
                self._reply(ws, {"type": "answer", "re": re, "sdp": answer, "slots": slots})
                self._apply(self.conference.set_media(session, slots.values()))
            case m.Candidate(candidate=cand, id=re):
                if self._media is None:
                    raise Conflict("this server runs without a media plane", re=re)
                await self._media.candidate(session, cand)
                if re is not None:
                    self._reply(ws, m.ok(re))
            case _:
                outcome = self.conference.handle(session, request, now)
                self._reply(ws, m.ok(request.id, **outcome.result))
                self._apply(outcome)

    async def _end(
        self,
        ws: ServerConnection,
        session: SessionId,
        left: bool,
        log: logging.LoggerAdapter[Any],
    ) -> None:
        if self._connections.get(session) is ws:
            del self._connections[session]
        if self._media is not None:
            try:
                await self._media.close_session(session)
            except Exception:
                log.exception("closing the session's media failed")
        now = self._clock()
        if left:
            self._apply(self.conference.leave(session, now))
            with contextlib.suppress(ConnectionClosed):
                await ws.close(1000, "left")
            log.info("left")
        else:
            self._apply(self.conference.detach(session, now))
            log.info("connection lost; the site stays for %.0f s", self.conference.grace)

    # -- server-side sessions (gateways) ------------------------------------------------------

    def attach_local(self, site_id: SiteId) -> SessionId:
        """Make *site_id* present through a session without a websocket: a gateway that
        carries the site's media itself (a WHIP push, the upper level's programme at the
        cascade uplink). The roster shows it online and the chair can give it the floor; a
        websocket login of the same site replaces it (and vice versa). Messages addressed to
        the session are dropped. End it with :meth:`detach_local`."""
        if site_id not in self.conference.sites:
            raise NotFound(f"unknown site {site_id!r}")
        session = SessionId("local-" + secrets.token_hex(6))
        outcome = self.conference.join(site_id, session, self._clock())
        logger.info("%s present through a server-side session %s", site_id, session)
        self._apply(outcome)
        return session

    async def detach_local(self, session: SessionId) -> None:
        """End a session made by :meth:`attach_local` (its site goes offline unless a newer
        session replaced it); idempotent."""
        if self._media is not None:
            try:
                await self._media.close_session(session)
            except Exception:
                logger.exception("closing the media of local session %s failed", session)
        self._apply(self.conference.leave(session, self._clock()))

    def deliver(self, outcome: Outcome) -> None:
        """Carry out an outcome of a conference change made outside a request (a gateway's
        :meth:`Conference.want_programme`): messages, closes, media plan, facts."""
        self._apply(outcome)
        if self._media is not None and not (outcome.messages or outcome.closes):
            try:
                self._media.apply(self.conference.plan)
            except Exception:
                logger.exception("routing the media plane failed")

    # -- helpers ----------------------------------------------------------------------------

    def _parse(self, frame: str | bytes) -> m.Request:
        return m.parse(frame, limit=self.config.max_frame_bytes)

    def _refuse(
        self,
        exc: BaseException,
        log: logging.LoggerAdapter[Any],
        request: m.Request | None = None,
    ) -> dict[str, Any]:
        """The one place that turns an exception into an ``error`` frame, answering the
        request's ``id`` when there is one."""
        self.stats["errors"] += 1
        code = error_code(exc)
        re = request.id if request is not None else None
        if isinstance(exc, SignallingError):
            log.debug("refused (%s): %s", code, exc.message)
            return m.error(exc.re if exc.re is not None else re, code, exc.message)
        log.exception("internal error while handling a message")
        text = f"internal error ({type(exc).__name__}); the server logged it"
        return m.error(re, code, text)

    def _reply(self, ws: ServerConnection, message: dict[str, Any]) -> None:
        self._send([ws], m.serialize(message))

    def _send(self, connections: Iterable[ServerConnection], text: str) -> None:
        targets = []
        for ws in connections:
            transport = ws.transport
            if transport is not None and transport.get_write_buffer_size() > SLOW_CLIENT_BYTES:
                logger.warning("closing %s: it does not read its messages", ws.remote_address)
                transport.abort()
                continue
            targets.append(ws)
        broadcast(targets, text)

    def _apply(self, outcome: Outcome) -> None:
        for recipients, message in outcome.messages:
            text = m.serialize(message)
            if recipients is None:
                self._send(list(self._connections.values()), text)
            else:
                conns = self._connections
                self._send([conns[s] for s in recipients if s in conns], text)
        for session, code, reason in outcome.closes:
            ws = self._connections.pop(session, None)
            if ws is not None:
                asyncio.get_running_loop().create_task(ws.close(code, reason))
        if self._media is not None and (outcome.messages or outcome.closes):
            try:
                self._media.apply(self.conference.plan)
            except Exception:
                logger.exception("routing the media plane failed")
        if outcome.facts and self._on_facts is not None:
            try:
                self._on_facts(outcome.facts)
            except Exception:
                logger.exception("persisting %d facts failed", len(outcome.facts))

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval_s)
            try:
                self._apply(self.conference.tick(self._clock()))
            except Exception:
                logger.exception("conference tick failed")
