"""The cascade uplink (级联): this server joins an upper-level Huishang as one of its sites.

ARCHITECTURE.md ("upper level"): a district links up to its city, a city to its province, each
its own server. Towards the upper level the uplink is an ordinary client of PROTOCOL.md (the
Python :class:`~signalling.client.Client`): ``hello`` with this server's token there (the upper
level's site directory gives it the ``uplink`` role), an ``offer`` in the protocol's shape
(audio sendrecv, video sendrecv) answered by the upper server, then events.

What goes up: this conference's programme, as a terminal at the local uplink site would get it
(:meth:`RoutingPlan.programme_for` — the floor holder, or the chair when nobody else holds
the floor; the audio of chair and floor holder, one forwarded stream or the server's mix)
minus the uplink site itself, so the upper level never sees or hears itself back. With
``publish_output`` set, the video is that wall output's composite instead. Both are relay slots
(:class:`bridge.uplink_peer.UplinkPeer`): forwarded, not transcoded.

What comes down: the upper level's programme (what it routes to our session: its floor holder
or its chair) is published here as the local uplink site's source (``MediaBridge.local_sources``
and ``local_decoders``, so the wall can decode it), and the site is made present with
:meth:`SignallingServer.attach_local` while the link is up: the chair can give it the floor or
the operator put it on the wall, and every street sees and hears the upper level.

Rules it keeps:

- ``pause`` from the upper level is obeyed (PROTOCOL.md "Media"): a paused kind's slot is
  routed to nothing, so nothing is forwarded up; on resume it switches back at the next
  keyframe. While the upper level wants anything, ``Conference.want_programme("uplink")``
  keeps this conference's programme publishers un-paused.
- Keyframe requests from the upper level reach the programme's publisher through the slot;
  local PLIs for the upper programme travel up as PLIs.
- ICE: the link uses the STUN/TURN servers the upper level hands out in ``welcome`` (as any
  of its terminals does; aiortc takes one username/credential, the first given), else this
  server's own; host candidates come from this server's ``[ice] host_addresses``, which must
  include an address the upper level can reach.
- Reconnects by itself: when the socket closes (the upper server restarts), the media fails or
  the first connection is refused, the link is torn down here (the site goes offline, which
  gives the floor back to the chair if it held it) and retried after an exponential backoff
  with jitter (:func:`backoff_delay`); a link that stayed up ``stable_after_s`` starts the
  backoff afresh. A link replaced by another login with the same token (close code 4409: two
  servers configured alike) is retried only every ``retry_max_s``, so they do not take turns
  every few seconds. The local conference never depends on the upper level.

The upper level's view of this server is followed from its events (who holds the floor
upstairs, our raised hand, whether its chair muted us); :meth:`Uplink.request` sends a request
there as our site (the district chair raising a hand to speak to the city, 举手申请发言).
``Uplink.status()`` is what ``GET /api/uplink`` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.peer import PeerConfig
from bridge.uplink_peer import UplinkPeer

from .client import Client, ClientError, Event
from .media import MediaBridge
from .model import SessionId, SiteId
from .server import SignallingServer

__all__ = ["Uplink", "UplinkConfig", "UplinkState", "backoff_delay"]

logger = logging.getLogger(__name__)

#: The conference's programme tap name (``Conference.want_programme``) and carry key.
TAP = "uplink"
#: WebSocket close codes after which retrying soon is pointless (PROTOCOL.md "Transport").
_CLOSE_UNAUTHORIZED = 4401
_CLOSE_REPLACED = 4409


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    """Where and how to join the upper level (owned by :mod:`signalling`; built by web/).

    - ``site``: the local site (level ``uplink``) that carries the upper level's programme.
    - ``publish_output``: None sends the programme's video; a wall output id sends its composite.
    - ``ssl``: the TLS context for a ``wss://`` ``url`` (None: the system's defaults).
    - ``retry_min_s`` / ``retry_max_s``: backoff bounds; ``stable_after_s``: a link up this
      long resets the backoff; ``connect_timeout_s``: for the socket's hello and for ICE/DTLS.
    """

    url: str
    token: str = field(repr=False)
    site: SiteId
    publish_output: str | None = None
    ssl: ssl.SSLContext | None = None
    client_name: str = "huishang-uplink"
    retry_min_s: float = 1.0
    retry_max_s: float = 30.0
    stable_after_s: float = 10.0
    connect_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"uplink url must start with ws:// or wss://, got {self.url!r}")
        if not 0 < self.retry_min_s <= self.retry_max_s:
            raise ValueError("need 0 < retry_min_s <= retry_max_s")


class UplinkState(enum.StrEnum):
    CONNECTING = "connecting"  # socket, hello, offer/answer, ICE/DTLS in progress
    UP = "up"  # media connected; the upper programme is a source here
    WAITING = "waiting"  # the last attempt failed or the link dropped; retrying later
    CLOSED = "closed"


def backoff_delay(
    failures: int, low: float, high: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before retry number *failures* (1, 2, ...): an exponential step
    ``low * 2**(failures-1)`` capped at *high*, of which a random half is waited ("equal
    jitter"), so districts cut off together do not all come back in the same instant."""
    step = min(high, low * 2 ** max(0, min(failures - 1, 30)))
    return float(step / 2 + rand() * step / 2)


class Uplink:
    """The reconnecting link to the upper level (see the module docstring)::

    uplink = Uplink(config, media, server, peer_config=media.peer_config)
    uplink.start()
    uplink.status()   # {"state": "up", ...}
    await uplink.close()
    """

    def __init__(
        self,
        config: UplinkConfig,
        media: MediaBridge,
        server: SignallingServer,
        *,
        peer_config: PeerConfig | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.media = media
        self.server = server
        self.peer_config = peer_config or media.peer_config
        self._rand = rand
        self.state = UplinkState.WAITING
        self.since = time.time()
        self.connects = 0  # links that came up
        self.attempts = 0
        self.failures = 0  # consecutive failed attempts or short-lived links
        self.last_error: str | None = None
        self.retry_at: float | None = None  # wall time of the next attempt while waiting
        self.upper: dict[str, Any] = {}  # our site at the upper level, from `welcome`
        self.upper_programme = ""  # label of what the upper level routes to us
        self.upper_floor: str | None = None  # who holds the floor upstairs
        self.upper_state: dict[str, Any] = {}  # our site's state upstairs (hand, muted...)
        self.upper_rollcall: dict[str, Any] = {}  # the upper level's roll call, if any
        self.paused = {"video": False, "audio": False}
        self._client: Client | None = None
        self._peer: UplinkPeer | None = None
        self._session: SessionId | None = None
        self._wanted = False
        self._replaced = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start linking up in the background (idempotent)."""
        if self._task is None and not self._closing:
            self._task = asyncio.create_task(self._run(), name="huishang-uplink")

    async def close(self) -> None:
        """Leave the upper level and take the upper programme away here (idempotent)."""
        self._closing = True
        self._changed.set()
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._teardown("closed", leave=True)
        self._set_state(UplinkState.CLOSED)

    def status(self) -> dict[str, Any]:
        """The link as ``GET /api/uplink`` shows it (no secrets)."""
        peer = self._peer
        now = time.time()
        return {
            "configured": True,
            "state": self.state.value,
            "since": self.since,
            "url": self.config.url,
            "site": self.config.site,
            "publish": self.config.publish_output or "programme",
            "upper_site": self.upper or None,
            "upper_programme": self.upper_programme,
            "upper_floor": self.upper_floor,
            "have_floor": bool(self.upper) and self.upper_floor == self.upper.get("id"),
            "hand": bool(self.upper_state.get("hand")),
            "muted_upstairs": bool(self.upper_state.get("audio_muted")),
            # the upper level's roll call (点名) calls this server now / has its answer
            "rollcall_called": self._called(),
            "rollcall_acked": self._our_id() in (self.upper_rollcall.get("acked") or ()),
            "connects": self.connects,
            "attempts": self.attempts,
            "failures": self.failures,
            "last_error": self.last_error,
            "retry_in_s": (
                round(max(0.0, self.retry_at - now), 1)
                if self.retry_at is not None and self.state is UplinkState.WAITING
                else None
            ),
            "paused": dict(self.paused),
            "media": peer.stats() if peer is not None else None,
        }

    # -- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            self.attempts += 1
            self._set_state(UplinkState.CONNECTING)
            started = time.monotonic()
            went_up = False
            self._replaced = False
            reason = "closed"
            try:
                went_up = await self._session_once()
                reason = self.last_error or "the upper level closed the link"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure is retried; none ends the loop
                reason = _describe(exc)
                self.last_error = reason
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._teardown(reason, leave=self._closing))
            if self._closing:
                break
            lasted = time.monotonic() - started
            if went_up and lasted >= self.config.stable_after_s and not self._replaced:
                self.failures = 0
            self.failures += 1
            delay = backoff_delay(
                self.failures, self.config.retry_min_s, self.config.retry_max_s, self._rand
            )
            if self._replaced:  # another server logs in with our token: do not fight it
                delay = self.config.retry_max_s
            if went_up:
                logger.warning("uplink to %s dropped (%s)", self.config.url, reason)
            else:
                logger.warning("uplink to %s failed: %s", self.config.url, reason)
            logger.info("uplink: retrying in %.1f s", delay)
            self.retry_at = time.time() + delay
            self._set_state(UplinkState.WAITING)
            await asyncio.sleep(delay)
            self.retry_at = None

    async def _session_once(self) -> bool:
        """One link: connect, negotiate, carry media until it drops. True if it came up."""
        config = self.config
        client = await Client.connect(
            config.url,
            config.token,
            client_name=config.client_name,
            timeout=config.connect_timeout_s,
            ssl_context=config.ssl,
            keep_events=False,  # events are handled as they come (on_event): none pile up
        )
        self._client = client
        self.paused = {"video": False, "audio": False}
        client.on_event = self._on_event
        self.upper = dict(client.site)
        snapshot = client.welcome.get("conference") or {}
        self.upper_floor = snapshot.get("floor")
        self.upper_rollcall = dict(snapshot.get("rollcall") or {})
        self.upper_state = next(
            (dict(x) for x in snapshot.get("sites", []) if x.get("id") == self.upper.get("id")),
            {},
        )
        if self.upper.get("role") != "uplink":
            logger.warning(
                "the upper level knows this server as %r with role %r, not 'uplink'",
                self.upper.get("id"),
                self.upper.get("role"),
            )
        self.last_error = None
        peer = UplinkPeer(
            f"uplink:{config.site}#{self.attempts}",
            self.media.relay,
            config=_peer_config(client.welcome.get("ice_servers"), self.peer_config),
            on_state=lambda _state: self._changed.set(),
        )
        self._peer = peer
        reply = await client.request({"type": "offer", "sdp": await peer.offer()})
        await peer.accept(str(reply["sdp"]))
        await peer.connected(config.connect_timeout_s)
        self._link_up(peer)
        self.connects += 1
        self._set_state(UplinkState.UP)
        logger.info(
            "uplink up: %s as %s (%s)",
            config.url,
            self.upper.get("id"),
            self.upper.get("name"),
        )
        while not self._closing:
            if client.closed:
                code = client.close_code
                self.last_error = f"the upper level closed the socket ({code})"
                if code == _CLOSE_REPLACED:
                    self._replaced = True
                    self.last_error = "replaced by another login with this token (4409)"
                break
            if peer.state in ("failed", "closed"):
                self.last_error = f"media {peer.state}"
                break
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._changed.wait()
        return True

    # -- link up / down -------------------------------------------------------------------

    def _link_up(self, peer: UplinkPeer) -> None:
        media, site = self.media, self.config.site
        sources = {
            kind: publication
            for kind in ("video", "audio")
            if (publication := peer.publication(kind)) is not None
        }
        media.local_sources[site] = sources
        media.local_decoders[site] = peer
        self._session = self.server.attach_local(site)
        self._carry()
        media.apply(media.conference.plan)

    def _carry(self) -> None:
        """Route the up-going slots as the upper level's ``pause`` state allows."""
        peer = self._peer
        if peer is None or self._session is None:
            return
        media = self.media
        video = None if self.paused["video"] else peer.slot("video")
        audio = None if self.paused["audio"] else peer.slot("audio")
        output = self.config.publish_output
        media.carry_programme(
            TAP, video=None if output else video, audio=audio, minus=self.config.site
        )
        wall = media.publication(output, "video") if output else None
        for kind, carried in (("video", video), ("audio", audio)):
            slot = peer.slot(kind)
            if slot is None or slot.closed:
                continue
            if carried is None:
                media.relay.route(slot, None)  # paused: forward nothing up
            elif kind == "video" and output:
                media.relay.route(slot, wall if wall is not None and not wall.closed else None)
        self._want(video is not None or audio is not None)

    def _want(self, on: bool) -> None:
        if on != self._wanted:
            self._wanted = on
            self.server.deliver(self.media.conference.want_programme(TAP, on))

    async def _teardown(self, reason: str, *, leave: bool = False) -> None:
        """Take the upper programme away here and close the link (idempotent)."""
        media, site = self.media, self.config.site
        peer, self._peer = self._peer, None
        client, self._client = self._client, None
        session, self._session = self._session, None
        self.upper_floor, self.upper_state, self.upper_programme = None, {}, ""
        self.upper_rollcall = {}
        media.drop_programme(TAP)
        self._want(False)
        if peer is not None and media.local_decoders.get(site) is peer:
            del media.local_decoders[site]
            media.local_sources.pop(site, None)
        if session is not None:
            await self.server.detach_local(session)
        elif peer is not None:
            media.apply(media.conference.plan)
        if peer is not None:
            await peer.close(reason)
        if client is not None:
            client.on_event = None
            with contextlib.suppress(Exception):
                await client.close(leave=leave)
        if peer is not None or session is not None:
            logger.info("uplink down (%s)", reason)

    # -- events from the upper level ------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        kind = event.get("type")
        if kind == "pause":
            paused = {"video": bool(event.get("video")), "audio": bool(event.get("audio"))}
            if paused != self.paused:
                logger.info("uplink: the upper level asks %s", _pause_words(paused))
                self.paused = paused
                self._carry()
        elif kind == "slots":
            main = (event.get("assign") or {}).get("main")
            if isinstance(main, dict):
                self.upper_programme = str(main.get("label") or "")
        elif kind == "floor":
            self.upper_floor = event.get("site")
            if self.upper_floor == self.upper.get("id"):
                logger.info("uplink: the upper level gives this server the floor")
        elif kind == "site":
            site = event.get("site")
            if isinstance(site, dict) and site.get("id") == self.upper.get("id"):
                self.upper_state = dict(site)
        elif kind == "rollcall":
            state = event.get("state")
            self.upper_rollcall = dict(state) if isinstance(state, dict) else {}
            if self._called():
                logger.info("uplink: the upper level's roll call calls this server (点名)")
        self._changed.set()

    def _our_id(self) -> Any:
        return self.upper.get("id") if self.upper else None

    def _called(self) -> bool:
        """The upper level's roll call calls this server now (the chair answers 到 with
        ``request({"type": "rollcall_ack"})``)."""
        ours = self._our_id()
        rollcall = self.upper_rollcall
        return ours is not None and bool(rollcall.get("active")) and rollcall.get("current") == ours

    async def request(self, message: Event, timeout: float = 10.0) -> Event:
        """Send a request to the upper level as this server's site there (the district chair
        raising a hand upstairs: ``{"type": "hand", "up": True}``) and return its reply.

        :class:`ClientError` with code ``not_connected`` when the link is not up; the upper
        level's own ``error`` replies raise :class:`ClientError` with their code.
        """
        client = self._client
        if client is None or client.closed or self.state is not UplinkState.UP:
            raise ClientError("not_connected", "the uplink is not connected")
        return await client.request(message, timeout)

    def _set_state(self, state: UplinkState) -> None:
        if state is not self.state:
            self.state = state
            self.since = time.time()


def _peer_config(servers: object, fallback: PeerConfig) -> PeerConfig:
    """ICE servers for the link: the upper level's own (``welcome``'s ``ice_servers``, W3C
    ``RTCIceServer`` dicts: its TURN is what reaches it through a NAT), else this server's."""
    if not isinstance(servers, list) or not servers:
        return fallback
    urls: list[str] = []
    username = credential = None
    for server in servers:
        if not isinstance(server, dict):
            continue
        found = server.get("urls")
        found = [found] if isinstance(found, str) else found
        if not isinstance(found, list):
            continue
        urls += [u for u in found if isinstance(u, str)]
        if username is None and isinstance(server.get("username"), str):
            username, credential = server["username"], server.get("credential")
    if not urls:
        return fallback
    return PeerConfig(
        ice_servers=tuple(urls),
        ice_username=username,
        ice_credential=credential if isinstance(credential, str) else None,
    )


def _pause_words(paused: dict[str, bool]) -> str:
    stopped = [k for k, v in paused.items() if v]
    return f"to stop sending {' and '.join(stopped)}" if stopped else "to send everything again"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        if exc.code == "unauthorized" or exc.close_code == _CLOSE_UNAUTHORIZED:
            return "the upper level refused this server's token (unauthorized)"
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
