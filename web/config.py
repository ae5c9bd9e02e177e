"""Loading ``config/huishang.toml`` and its site directory (ARCHITECTURE.md, config/).

The server reads TOML with the standard library (:mod:`tomllib`, TOML 1.0) and turns it into
frozen dataclasses. Nothing is guessed: a missing or mistyped value, an unknown key (a typo),
an unknown role, a duplicate site id, a parent that does not exist or a port out of range
stops the start with a :class:`ConfigError` naming the file, the key as a dotted path
(``sites.toml: sites[3].role``, array indexes count from 0) and what is wrong.

Paths in the files (``sites``, ``data_dir``, ``tls.cert``, ``tls.key``, ``demo.tokens_file``,
``uplink.token_file``, ``uplink.ca_file``) resolve against the folder of the file that names
them, so the server behaves the same from any working directory; ``~`` is expanded.
``data_dir_override`` (the CLI's ``--data``) is a command-line path: relative to the working
directory.

The optional ``[uplink]`` table (the cascade uplink, 级联; :mod:`web.uplink`) links this server
up to an upper-level Huishang: its signalling ``url`` (``ws://`` or ``wss://``), this server's
``token`` there (or a ``token_file`` holding it, so the secret stays out of the main file), the
local ``site`` (level ``uplink`` in the site directory) under which the upper level's programme
appears here, what to publish upwards (``publish = "programme"``: the floor holder or the
chair, with the programme audio; ``"wall"``: a wall ``output``, with the programme audio), and
for ``wss://`` a ``ca_file`` to trust (a self-signed upper server) or ``verify = false``
(testing only: no certificate check at all). ``retry_min_s`` / ``retry_max_s`` bound the
reconnect backoff. No ``[uplink]`` table: no uplink.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from signalling.model import Level, Role, Site, SiteId
from web.config_reader import ConfigError, TableReader
from web.tokens import verify

__all__ = [
    "CameraSettings",
    "ConfigError",
    "HuishangConfig",
    "IceConfig",
    "IceServer",
    "Limits",
    "Listener",
    "TlsConfig",
    "TlsMode",
    "UplinkPublish",
    "UplinkSettings",
    "default_config_path",
    "load_config",
    "near_matches",
]

_PORT_RANGE = (0, 65535)


class TlsMode(enum.StrEnum):
    """How the listeners get a certificate (ARCHITECTURE.md, web/: HTTPS/WSS)."""

    OFF = "off"
    SELF_SIGNED = "self-signed"
    FILES = "files"


@dataclass(frozen=True, slots=True)
class Listener:
    """One TCP listener. ``port`` 0 lets the system pick a free port (tests)."""

    host: str = "127.0.0.1"
    port: int = 0
    #: The URL clients are told to use (``GET /api/info``) when they reach it via a proxy.
    public_url: str | None = None


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Certificate source; ``cert``/``key`` are absolute (``None``: default place when made)."""

    mode: TlsMode = TlsMode.OFF
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN/TURN server (W3C WebRTC ``RTCIceServer``)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The ``RTCIceServer`` dictionary sent in ``welcome`` (PROTOCOL.md, Session)."""
        out: dict[str, object] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True, slots=True)
class IceConfig:
    """ICE: servers for the clients, host addresses the server gathers candidates on."""

    servers: tuple[IceServer, ...] = ()
    host_addresses: tuple[str, ...] = ("127.0.0.1",)

    def welcome_servers(self) -> list[dict[str, object]]:
        """A fresh list of ``RTCIceServer`` dicts, ready for the ``welcome`` message."""
        return [server.as_dict() for server in self.servers]


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-session protection limits (PROTOCOL.md, Transport)."""

    max_frame_bytes: int = 262144
    rate_per_s: float = 20.0
    rate_burst: int = 40
    rejoin_grace_s: float = 15.0


@dataclass(frozen=True, slots=True)
class CameraSettings:
    """Where the server pulls a camera site's stream from (RTSP ingest gateway)."""

    rtsp_url: str
    rtsp_transport: str = "tcp"  # "tcp" | "udp"


class UplinkPublish(enum.StrEnum):
    """What the cascade uplink sends to the upper level (always with the programme audio)."""

    PROGRAMME = "programme"  # the floor holder, or the chair when nobody holds the floor
    WALL = "wall"  # one wall output's composite


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    """The ``[uplink]`` table: where and how this server joins its upper level (级联)."""

    url: str
    token: str = field(repr=False)
    site: SiteId
    publish: UplinkPublish = UplinkPublish.PROGRAMME
    output: str = "wall"  # the wall output sent when ``publish`` is ``wall``
    verify: bool = True  # False: no TLS certificate check (testing only)
    ca_file: Path | None = None  # extra CA bundle (PEM) for a self-signed upper server
    retry_min_s: float = 1.0
    retry_max_s: float = 30.0


def _empty_map() -> Mapping[SiteId, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class HuishangConfig:
    """Everything the composition root needs, read once at start."""

    path: Path
    sites_path: Path
    data_dir: Path
    web: Listener = field(default_factory=lambda: Listener(port=8080))
    signalling: Listener = field(default_factory=lambda: Listener(port=8081))
    tls: TlsConfig = field(default_factory=TlsConfig)
    ice: IceConfig = field(default_factory=IceConfig)
    limits: Limits = field(default_factory=Limits)
    #: In the directory's order (the district, then each street followed by its communities...).
    sites: tuple[Site, ...] = ()
    #: Configured token hashes; the store's issued tokens override them per site.
    token_hashes: Mapping[SiteId, str] = field(default_factory=_empty_map)
    #: DEMO ONLY plain tokens (``[demo] tokens_file``); empty in a real deployment.
    demo_tokens: Mapping[SiteId, str] = field(default_factory=_empty_map)
    cameras: Mapping[SiteId, CameraSettings] = field(default_factory=lambda: MappingProxyType({}))
    #: The cascade uplink to an upper-level server; None: this server links up to nobody.
    uplink: UplinkSettings | None = None
    #: ``[recording] source``: what the chair's record switch records: a wall output id or
    #: "programme" (floor holder or chair); None: the first wall output.
    recording_source: str | None = None

    def site(self, site_id: str) -> Site:
        """The site with this id (:class:`KeyError` if none)."""
        for site in self.sites:
            if site.id == site_id:
                return site
        raise KeyError(site_id)

    @property
    def site_ids(self) -> tuple[SiteId, ...]:
        return tuple(site.id for site in self.sites)

    @property
    def site_names(self) -> dict[str, str]:
        """Site id → name, in directory order (for exports such as attendance CSV)."""
        return {site.id: site.name for site in self.sites}


def default_config_path() -> Path:
    """``config/huishang.toml`` next to the ``web`` package (a source checkout or editable
    install). :class:`ConfigError` if it is not there (pass ``--config``)."""
    path = Path(__file__).resolve().parent.parent / "config" / "huishang.toml"
    if not path.is_file():
        raise ConfigError(path, None, "default configuration not found; pass --config FILE")
    return path


def near_matches(word: str, choices: list[str], n: int = 3) -> list[str]:
    """Up to *n* of *choices* that look like *word* (for "did you mean" hints)."""
    return difflib.get_close_matches(word, choices, n=n, cutoff=0.6)


def load_config(path: Path, *, data_dir_override: Path | None = None) -> HuishangConfig:
    """Read and check *path* and the files it names; :class:`ConfigError` on any problem."""
    path = Path(path).expanduser().resolve()
    top = TableReader.load(path)
    sites_path = top.path_value("sites", default="sites.toml")
    data_dir = top.path_value("data_dir", default="data")
    if data_dir_override is not None:
        data_dir = Path(data_dir_override).expanduser().resolve()

    web_listener = _listener(top.table("web"), default_port=8080, public_url=False)
    signalling_listener = _listener(top.table("signalling"), default_port=8081, public_url=True)
    if web_listener.port and web_listener.port == signalling_listener.port:
        raise top.error("signalling.port", f"same port as web.port ({web_listener.port})")
    tls = _tls(top.table("tls"))
    ice = _ice(top.table("ice"))
    limits = _limits(top.table("limits"))
    demo = top.table("demo")
    tokens_path = demo.optional_path("tokens_file")
    demo.finish()
    recording = top.table("recording")
    recording_source = recording.optional_string("source")  # checked against the outputs
    recording.finish()
    has_uplink = top.has("uplink")
    uplink_table = top.table("uplink")  # (read even when absent: a near miss gets a hint)
    top.finish()

    sites, token_hashes, cameras = _read_sites(sites_path)
    uplink = _uplink(uplink_table, sites, sites_path) if has_uplink else None
    demo_tokens: dict[SiteId, str] = {}
    if tokens_path is not None:
        demo_tokens = _read_demo_tokens(tokens_path, sites_path, token_hashes)
    return HuishangConfig(
        path=path,
        sites_path=sites_path,
        data_dir=data_dir,
        web=web_listener,
        signalling=signalling_listener,
        tls=tls,
        ice=ice,
        limits=limits,
        sites=sites,
        token_hashes=MappingProxyType(token_hashes),
        demo_tokens=MappingProxyType(demo_tokens),
        cameras=MappingProxyType(cameras),
        uplink=uplink,
        recording_source=recording_source,
    )


def _listener(table: TableReader, *, default_port: int, public_url: bool) -> Listener:
    host = table.string("host", default="127.0.0.1", nonempty=True)
    port = table.integer("port", default=default_port, bounds=_PORT_RANGE)
    url: str | None = None
    if public_url:
        url = table.optional_string("public_url")
        if url is not None and not url.startswith(("ws://", "wss://")):
            raise table.error("public_url", f"must start with ws:// or wss://, got {url!r}")
    table.finish()
    return Listener(host=host, port=port, public_url=url)


def _tls(table: TableReader) -> TlsConfig:
    mode_text = table.choice("mode", [m.value for m in TlsMode], default=TlsMode.OFF.value)
    mode = TlsMode(mode_text)
    cert = table.optional_path("cert")
    key = table.optional_path("key")
    table.finish()
    if (cert is None) != (key is None):
        missing = "key" if key is None else "cert"
        raise table.error(missing, "cert and key must be given together")
    if mode is TlsMode.FILES:
        if cert is None or key is None:
            raise table.error("cert", 'mode "files" needs cert and key')
        for name, file in (("cert", cert), ("key", key)):
            if not file.is_file():
                raise table.error(name, f"file not found: {file}")
    return TlsConfig(mode=mode, cert=cert, key=key)


def _ice(table: TableReader) -> IceConfig:
    addresses = table.string_list("host_addresses", default=["127.0.0.1"])
    for index, address in enumerate(addresses):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise table.error(
                f"host_addresses[{index}]", f"not an IP address: {address!r}"
            ) from None
    servers = []
    for server in table.array_of_tables("servers"):
        if server.has("urls") and isinstance(server.raw("urls"), str):
            urls = [server.string("urls", nonempty=True)]
        else:
            urls = server.string_list("urls")
            if not urls:
                raise server.error("urls", "needs at least one URL")
        for index, url in enumerate(urls):
            if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise server.error(
                    f"urls[{index}]", f"must start with stun:, stuns:, turn: or turns:, got {url!r}"
                )
        username = server.optional_string("username")
        credential = server.optional_string("credential")
        server.finish()
        servers.append(IceServer(tuple(urls), username, credential))
    table.finish()
    return IceConfig(servers=tuple(servers), host_addresses=tuple(addresses))


def _limits(table: TableReader) -> Limits:
    defaults = Limits()
    limits = Limits(
        max_frame_bytes=table.integer(
            "max_frame_bytes", default=defaults.max_frame_bytes, bounds=(1024, 64 * 1024 * 1024)
        ),
        rate_per_s=table.number("rate_per_s", default=defaults.rate_per_s, positive=True),
        rate_burst=table.integer("rate_burst", default=defaults.rate_burst, bounds=(1, 1_000_000)),
        rejoin_grace_s=table.number("rejoin_grace_s", default=defaults.rejoin_grace_s),
    )
    table.finish()
    return limits


def _uplink(table: TableReader, sites: tuple[Site, ...], sites_path: Path) -> UplinkSettings:
    url = table.string("url", nonempty=True)
    if not url.startswith(("ws://", "wss://")):
        raise table.error("url", f"must start with ws:// or wss://, got {url!r}")
    token = table.optional_string("token")
    token_file = table.optional_path("token_file")
    if token is not None and token_file is not None:
        raise table.error("token_file", "give token or token_file, not both")
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            problem = getattr(exc, "strerror", None) or str(exc)
            raise table.error("token_file", f"cannot read {token_file}: {problem}") from None
        if not token:
            raise table.error("token_file", f"{token_file} is empty")
    if token is None:
        raise table.error("token", "missing (required; or give token_file)")
    site_id = SiteId(table.string("site", nonempty=True))
    publish = UplinkPublish(
        table.choice(
            "publish", [p.value for p in UplinkPublish], default=UplinkPublish.PROGRAMME.value
        )
    )
    output = table.optional_string("output")
    verify = table.boolean("verify", default=True)
    ca_file = table.optional_path("ca_file")
    defaults = UplinkSettings(url="", token="", site=SiteId(""))
    retry_min = table.number("retry_min_s", default=defaults.retry_min_s, positive=True)
    retry_max = table.number("retry_max_s", default=defaults.retry_max_s, positive=True)
    table.finish()
    if output is not None and publish is not UplinkPublish.WALL:
        raise table.error("output", 'only used with publish = "wall"')
    if not url.startswith("wss://"):
        if ca_file is not None:
            raise table.error("ca_file", "only used with a wss:// url")
        if not verify:
            raise table.error("verify", "only used with a wss:// url")
    if ca_file is not None and not verify:
        raise table.error("ca_file", "verify = false checks no certificate: drop one of them")
    if ca_file is not None and not ca_file.is_file():
        raise table.error("ca_file", f"file not found: {ca_file}")
    if retry_max < retry_min:
        raise table.error("retry_max_s", f"must not be less than retry_min_s ({retry_min:g})")
    site = next((s for s in sites if s.id == site_id), None)
    if site is None:
        hint = _did_you_mean(site_id, [s.id for s in sites if s.level is Level.UPLINK])
        raise table.error("site", f"no site {site_id!r} in {sites_path.name}{hint}")
    if site.level is not Level.UPLINK:
        raise table.error(
            "site", f"site {site_id!r} has level {site.level.value!r}; it must be 'uplink'"
        )
    return UplinkSettings(
        url=url,
        token=token,
        site=site_id,
        publish=publish,
        output=output or "wall",
        verify=verify,
        ca_file=ca_file,
        retry_min_s=retry_min,
        retry_max_s=retry_max,
    )


def _read_sites(
    path: Path,
) -> tuple[tuple[Site, ...], dict[SiteId, str], dict[SiteId, CameraSettings]]:
    top = TableReader.load(path)
    entries = top.array_of_tables("sites", required=True)
    top.finish()
    sites: list[Site] = []
    where: dict[SiteId, TableReader] = {}
    hashes: dict[SiteId, str] = {}
    cameras: dict[SiteId, CameraSettings] = {}
    roles = [r.value for r in Role]
    levels = [lv.value for lv in Level]
    for entry in entries:
        site_id = SiteId(entry.string("id", nonempty=True))
        if any(ch.isspace() for ch in site_id):
            raise entry.error("id", f"must not contain spaces: {site_id!r}")
        if site_id in where:
            raise entry.error("id", f"duplicate id {site_id!r} (also at {where[site_id].key})")
        name = entry.string("name", nonempty=True)
        role = Role(entry.choice("role", roles, what="role"))
        level = Level(entry.choice("level", levels, what="level"))
        parent = entry.optional_string("parent")
        token_hash = entry.optional_hash("token_hash")
        rtsp_url = entry.optional_string("rtsp_url")
        transport = entry.choice("rtsp_transport", ["tcp", "udp"], default="tcp")
        if rtsp_url is None and entry.has("rtsp_transport"):
            raise entry.error("rtsp_transport", "given without rtsp_url")
        if rtsp_url is not None and not rtsp_url.startswith(("rtsp://", "rtsps://")):
            raise entry.error("rtsp_url", f"must start with rtsp:// or rtsps://, got {rtsp_url!r}")
        entry.finish()
        where[site_id] = entry
        sites.append(Site(site_id, name, level, role, SiteId(parent) if parent else None))
        if token_hash is not None:
            hashes[site_id] = token_hash
        if rtsp_url is not None:
            cameras[site_id] = CameraSettings(rtsp_url, transport)
    parents = {site.id: site.parent for site in sites}
    for site in sites:
        if site.parent is None:
            continue
        entry = where[site.id]
        if site.parent == site.id:
            raise entry.error("parent", "a site cannot be its own parent")
        if site.parent not in parents:
            hint = _did_you_mean(site.parent, list(parents))
            raise entry.error("parent", f"no site with id {site.parent!r}{hint}")
        seen = {site.id}
        up: SiteId | None = site.parent
        while up is not None:
            if up in seen:
                raise entry.error("parent", f"parent chain loops back to {up!r}")
            seen.add(up)
            up = parents[up]
    return tuple(sites), hashes, cameras


def _read_demo_tokens(
    path: Path, sites_path: Path, hashes: Mapping[SiteId, str]
) -> dict[SiteId, str]:
    table = TableReader.load(path)
    tokens: dict[SiteId, str] = {}
    for key in table.key_names():
        if key not in hashes:
            hint = _did_you_mean(key, list(hashes))
            raise table.error(
                key, f"no site with this id and a token_hash in {sites_path.name}{hint}"
            )
        token = table.string(key, nonempty=True)
        if not verify(token, hashes[SiteId(key)]):
            raise table.error(key, f"token does not match the token_hash in {sites_path.name}")
        tokens[SiteId(key)] = token
    table.finish()
    return tokens


def _did_you_mean(word: str, choices: list[str]) -> str:
    near = near_matches(word, choices)
    return f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
