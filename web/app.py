"""The composition root: loads the configuration, wires store → conference → signalling
server → aiohttp app, and runs them (ARCHITECTURE.md, web/).

Nothing imports this module but the CLI and the tests::

    app = await Huishang.open(config_path, data_dir, host="127.0.0.1", port=0)
    print(app.web_url, app.join_url("tianhe.zhuji"))
    await app.close()
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from bridge.aiortc_adapter import check_aiortc_internals
from bridge.ice import IceConfig, apply_ice_config
from bridge.mixer import AudioMixer
from bridge.peer import PeerConfig
from bridge.relay import Relay
from bridge.wall import WallConfig
from signalling import conference as conf
from signalling import messages as m
from signalling.media import MediaBridge
from signalling.model import Layout, Site, SiteId
from signalling.server import ServerConfig, SignallingServer
from signalling.wall import WallDirector, wall_geometry
from web import cameras, recording, uplink, whip
from web.config import HuishangConfig, Listener, default_config_path, load_config
from web.gateway import Gateway, GatewayStart
from web.layouts import LAYOUTS_FILE, load_layout_presets
from web.routes import setup_routes
from web.store import Store
from web.tls import server_ssl_context
from web.tokens import TokenBook

__all__ = ["GATEWAYS", "Huishang"]

logger = logging.getLogger(__name__)

#: The gateways to other systems (:mod:`web.gateway`), started in this order.
GATEWAYS: tuple[GatewayStart, ...] = (recording.start, cameras.start, whip.start, uplink.start)


class Huishang:
    """One running server: its configuration, store, conference and listeners."""

    def __init__(
        self,
        config: HuishangConfig,
        store: Store,
        tokens: TokenBook,
        conference: conf.Conference,
        signalling: SignallingServer,
    ) -> None:
        self.config = config
        self.store = store
        self.tokens = tokens
        self.conference = conference
        self.signalling = signalling
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._closed = False
        self._tokens_read_at = time.monotonic()
        self.media: MediaBridge | None = None
        self.walls: WallDirector | None = None  # the wall outputs (bridge.wall)
        self.gateways: list[Gateway] = []  # recorder, cameras, WHIP/WHEP, uplink
        #: Called with every batch of conference facts after they are stored (the recorder
        #: follows ``RecordingChanged``).
        self.fact_listeners: list[Callable[[Sequence[conf.Fact]], None]] = []
        self._undo_ice: Callable[[], None] = lambda: None
        self.web_url = ""

    @classmethod
    async def open(
        cls,
        config_path: Path | None = None,
        data_dir: Path | None = None,
        host: str | None = None,
        port: int | None = None,
        *,
        config: HuishangConfig | None = None,
    ) -> Huishang:
        """Load *config_path* (default: the demo config) and start every listener.

        *host* and *port* override the configured web listener; the signalling listener then
        takes *port* + 1, or a free port of its own when *port* is 0.
        """
        if config is None:
            config = load_config(config_path or default_config_path(), data_dir_override=data_dir)
        if host is not None or port is not None:
            web_port = config.web.port if port is None else port
            sig_port = config.signalling.port if port is None else (port + 1 if port else 0)
            config = dataclasses.replace(
                config,
                web=Listener(host or config.web.host, web_port, config.web.public_url),
                signalling=Listener(
                    host or config.signalling.host, sig_port, config.signalling.public_url
                ),
            )
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store.in_data_dir(config.data_dir)
        try:
            return await cls._start(config, store)
        except BaseException:
            store.close()
            raise

    @classmethod
    async def _start(cls, config: HuishangConfig, store: Store) -> Huishang:
        known = {s.id for s in config.sites}
        tokens = TokenBook.merged(config.token_hashes, store.token_hashes(), known=known)
        # -- layout presets: the shipped ones (layouts.toml next to the config), then the
        # store's, which override them by name. A missing file means no shipped presets.
        presets: dict[str, Layout] = load_layout_presets(config.path.parent / LAYOUTS_FILE, known)
        for name in store.deleted_presets() & presets.keys():  # the operator deleted it
            del presets[name]
        for name, wire in store.presets().items():
            try:
                presets[name] = m.layout_from_wire(wire)
            except Exception as exc:  # a preset naming a removed site, an old format...
                logger.warning("skipping stored preset %r: %s", name, exc)
        started = time.time()
        conference_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
        conference_id += "-" + secrets.token_hex(2)
        chair = next((s for s in config.sites if s.role.value == "chair"), None)
        title = f"{chair.name} 视频会商" if chair else "视频会商"
        wall_config = WallConfig()  # every output's size, rate, encoder (bridge defaults)
        conference = conf.Conference(
            config.sites,
            conf.ConferenceConfig(
                conference_id=conference_id,
                title=title,
                rejoin_grace_s=config.limits.rejoin_grace_s,
                wall=wall_geometry(wall_config),
            ),
            presets=presets,
        )
        store.start_conference(conference_id, title, started)
        ssl_context = server_ssl_context(config)
        server_config = ServerConfig(
            host=config.signalling.host,
            port=config.signalling.port,
            max_frame_bytes=config.limits.max_frame_bytes,
            rate_per_s=config.limits.rate_per_s,
            rate_burst=config.limits.rate_burst,
            ice_servers=tuple(s.as_dict() for s in config.ice.servers),
            ssl=ssl_context,
        )
        listeners: list[Callable[[Sequence[conf.Fact]], None]] = []
        persist = _FactWriter(store, conference_id, listeners)
        check_aiortc_internals()  # the relay reaches into aiortc: fail at start, not mid-call
        undo_ice = apply_ice_config(IceConfig(host_addresses=config.ice.host_addresses))
        media = MediaBridge(conference, Relay(), _peer_config(config))
        signalling = SignallingServer(
            conference, server_config, lambda t: None, on_facts=persist, media=media
        )
        app = cls(config, store, tokens, conference, signalling)
        app.media, app._undo_ice = media, undo_ice
        app.fact_listeners = listeners
        app.walls = WallDirector.for_conference(conference, media, wall_config)
        app.walls.start()
        media.use_mixer(AudioMixer(relay_config=media.relay.config))  # programme audio mix
        signalling.authenticate = app.authenticate
        await signalling.start()
        try:
            aio = web.Application(client_max_size=1024 * 1024)
            setup_routes(aio, app)
            for start in GATEWAYS:
                app.gateways.append(await start(app, aio))
            app._runner = web.AppRunner(aio, access_log=None)
            await app._runner.setup()
            app._site = web.TCPSite(
                app._runner, config.web.host, config.web.port, ssl_context=ssl_context
            )
            await app._site.start()
        except BaseException:
            await app.close()
            raise
        server = app._site._server
        assert server is not None
        web_port = next(iter(server.sockets)).getsockname()[1]  # type: ignore[attr-defined]
        scheme = "https" if ssl_context else "http"
        app.web_url = f"{scheme}://{_url_host(config.web.host)}:{web_port}"
        logger.info("web %s, signalling %s", app.web_url, app.signalling_url)
        return app

    @property
    def signalling_url(self) -> str:
        public = self.config.signalling.public_url
        if public:
            return public
        scheme = "wss" if self.signalling.config.ssl is not None else "ws"
        return f"{scheme}://{_url_host(self.config.signalling.host)}:{self.signalling.port}/"

    def authenticate(self, token: str) -> SiteId | None:
        """The site a token belongs to. On a miss the store's tokens are read again (at most
        once a second), so a token issued by ``huishang token`` works without a restart."""
        site = self.tokens.lookup(token)
        if site is None and not self._closed and time.monotonic() - self._tokens_read_at > 1:
            self._tokens_read_at = time.monotonic()
            known = {s.id for s in self.config.sites}
            overrides = self.store.token_hashes()
            self.tokens = TokenBook.merged(self.config.token_hashes, overrides, known=known)
            site = self.tokens.lookup(token)
        return site

    def token_for(self, site_id: SiteId) -> str | None:
        """The plain token of a demo site (real deployments keep no plain tokens)."""
        return self.config.demo_tokens.get(site_id)

    def join_url(self, site_id: str, token: str | None = None) -> str:
        """A ready-to-open page URL for *site_id*, carrying its token."""
        token = token or self.token_for(SiteId(site_id))
        if token is None:
            return f"{self.web_url}/join"
        return f"{self.web_url}/join?token={quote(token)}"

    def site(self, site_id: str) -> Site:
        return self.conference.sites[SiteId(site_id)]

    async def close(self) -> None:
        """Stop the listeners, record the conference's end, close the store (idempotent)."""
        with contextlib.suppress(Exception):
            await self.signalling.close()
        while self.gateways:
            gateway = self.gateways.pop()
            try:
                await gateway.close()
            except Exception:
                logger.exception("closing gateway %r failed", gateway)
        if self.walls is not None:
            walls, self.walls = self.walls, None
            try:
                await walls.close()
            except Exception:
                logger.exception("closing the wall outputs failed")
        if self.media is not None:
            media, self.media = self.media, None
            try:
                await media.close()
            except Exception:
                logger.exception("closing the media plane failed")
            self._undo_ice()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if not self._closed:
            self._closed = True
            now = time.time()
            for site_id in self.conference.online():
                self.store.record_leave(self.conference.config.conference_id, site_id, now)
            self.store.end_conference(self.conference.config.conference_id, now)
            self.store.close()


class _FactWriter:
    """Persists the conference's facts: attendance, roll-call results, presets."""

    def __init__(
        self,
        store: Store,
        conference_id: str,
        listeners: list[Callable[[Sequence[conf.Fact]], None]],
    ) -> None:
        self.store, self.conference_id = store, conference_id
        self.listeners = listeners

    def __call__(self, facts: Sequence[conf.Fact]) -> None:
        cid = self.conference_id
        for fact in facts:
            match fact:
                case conf.SiteJoined(site=site, at=at):
                    self.store.record_join(cid, site, at)
                case conf.SiteLeft(site=site, at=at):
                    self.store.record_leave(cid, site, at)
                case conf.RollcallResult(round_no=round_no, site=site, result=result, at=at):
                    self.store.record_rollcall(cid, round_no, site, result, at)
                case conf.PresetSaved(name=name, layout=layout):
                    self.store.save_preset(name, m.layout_to_wire(layout))
                case conf.PresetDeleted(name=name):
                    self.store.delete_preset(name)
                case conf.RecordingChanged():
                    pass  # the recorder (web.recording) indexes its files itself
        for listener in tuple(self.listeners):
            try:
                listener(facts)
            except Exception:
                logger.exception("a conference fact listener failed")


def _peer_config(config: HuishangConfig) -> PeerConfig:
    """The server's own ICE servers (its peers need TURN only behind a NAT)."""
    servers = config.ice.servers
    urls = tuple(url for server in servers for url in server.urls)
    first = servers[0] if servers else None
    return PeerConfig(
        ice_servers=urls,
        ice_username=first.username if first else None,
        ice_credential=first.credential if first else None,
    )


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
