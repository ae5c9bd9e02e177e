"""Configuration loading: the demo config, and bad configs failing with file, key and reason."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from signalling.model import Level, Role, SiteId
from web.config import (
    ConfigError,
    HuishangConfig,
    TlsMode,
    UplinkPublish,
    default_config_path,
    load_config,
)
from web.tokens import TokenBook, hash_token, verify
from web.uplink import uplink_config

STREETS = [
    ("zhuji", "珠吉街"),
    ("xiancun", "冼村街"),
    ("liede", "猎德街"),
    ("shahe", "沙河街"),
    ("shipai", "石牌街"),
    ("changxing", "长兴街"),
    ("tianhenan", "天河南街"),
    ("huangcun", "黄村街"),
    ("linhe", "林和街"),
    ("longdong", "龙洞街"),
    ("qianjin", "前进街"),
    ("shadong", "沙东街"),
    ("tianyuan", "天园街"),
    ("wushan", "五山街"),
    ("xintang", "新塘街"),
    ("yuangang", "元岗街"),
    ("yuancun", "员村街"),
    ("chebei", "车陂街"),
    ("fenghuang", "凤凰街"),
]


@pytest.fixture(scope="module")
def demo() -> HuishangConfig:
    return load_config(default_config_path())


# -- the demo config ----------------------------------------------------------------------


def test_demo_listeners_and_limits(demo: HuishangConfig) -> None:
    assert demo.web.host == "127.0.0.1" and demo.web.port == 8080
    assert demo.signalling.host == "127.0.0.1" and demo.signalling.port == 8081
    assert demo.signalling.public_url is None
    assert demo.tls.mode is TlsMode.OFF
    assert demo.ice.host_addresses == ("127.0.0.1",)
    assert demo.ice.welcome_servers() == []
    assert demo.limits.max_frame_bytes == 262144
    assert demo.limits.rate_per_s > 0 and demo.limits.rate_burst >= 1
    assert demo.limits.rejoin_grace_s > 0
    # data_dir resolves against the config file's folder: the repository's git-ignored data/.
    assert demo.data_dir == default_config_path().parent.parent / "data"
    assert demo.sites_path == default_config_path().parent / "sites.toml"


def test_demo_streets_in_order(demo: HuishangConfig) -> None:
    streets = [s for s in demo.sites if s.level is Level.STREET]
    assert [(s.id, s.name) for s in streets] == [(f"tianhe.{i}", n) for i, n in STREETS]
    for street in streets:
        assert street.role is Role.TERMINAL
        assert street.parent == "tianhe"


def test_demo_control_sites(demo: HuishangConfig) -> None:
    chair = demo.site("tianhe")
    assert (chair.name, chair.role, chair.level) == (
        "天河区应急指挥中心",
        Role.CHAIR,
        Level.DISTRICT,
    )
    operator = demo.site("tianhe.operator")
    assert (operator.name, operator.role, operator.level) == (
        "值班操作台",
        Role.OPERATOR,
        Level.CONTROL,
    )
    wall = demo.site("tianhe.wall")
    assert (wall.name, wall.role, wall.level) == ("指挥大厅大屏", Role.WALL, Level.CONTROL)
    uplink = demo.site("tianhe.uplink")
    assert (uplink.name, uplink.role, uplink.level) == (
        "广州市应急指挥中心",
        Role.UPLINK,
        Level.UPLINK,
    )
    cam = demo.site("tianhe.cam1")
    assert (cam.role, cam.level) == (Role.OBSERVER, Level.CAMERA)
    assert demo.cameras[SiteId("tianhe.cam1")].rtsp_url.startswith("rtsp://")
    assert demo.cameras[SiteId("tianhe.cam1")].rtsp_transport in ("tcp", "udp")
    with pytest.raises(KeyError):
        demo.site("tianhe.nowhere")


def test_demo_communities(demo: HuishangConfig) -> None:
    for street_id, _ in STREETS:
        communities = [s for s in demo.sites if s.parent == f"tianhe.{street_id}"]
        assert 2 <= len(communities) <= 3, street_id
        for index, community in enumerate(communities, 1):
            assert community.id == f"tianhe.{street_id}.c{index}"
            assert community.level is Level.COMMUNITY and community.role is Role.TERMINAL
            assert community.name.endswith("社区")
    ids = [s.id for s in demo.sites]
    assert len(ids) == len(set(ids))


def test_every_demo_token_verifies(demo: HuishangConfig) -> None:
    assert set(demo.demo_tokens) == set(demo.site_ids) == set(demo.token_hashes)
    book = TokenBook(demo.token_hashes)
    for site_id, token in demo.demo_tokens.items():
        assert verify(token, demo.token_hashes[site_id])
        assert book.lookup(token) == site_id
    assert book.lookup("not-a-token") is None


def test_data_dir_override_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(default_config_path(), data_dir_override=Path("state"))
    assert config.data_dir == tmp_path.resolve() / "state"


def test_config_works_from_another_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(Path(os.path.relpath(default_config_path(), tmp_path)))
    assert len(config.sites) > 60


# -- a small config written to tmp_path ------------------------------------------------------

TOKEN = "tok-abcdefghijklmnopqrstuv"

MAIN = """\
sites = "sites.toml"
data_dir = "state"

[web]
host = "127.0.0.1"
port = 8080

[signalling]
host = "127.0.0.1"
port = 8081

[tls]
mode = "off"

[ice]
host_addresses = ["127.0.0.1"]

[limits]
max_frame_bytes = 262144
rate_per_s = 20.0
rate_burst = 40
rejoin_grace_s = 15.0
"""

SITES = """\
[[sites]]
id = "hq"
name = "指挥中心"
role = "chair"
level = "district"
token_hash = "{hash}"

[[sites]]
id = "hq.a"
name = "甲街"
role = "terminal"
level = "street"
parent = "hq"

[[sites]]
id = "hq.a.c1"
name = "甲社区"
role = "terminal"
level = "community"
parent = "hq.a"

[[sites]]
id = "hq.b"
name = "乙街"
role = "terminal"
level = "street"
parent = "hq"
"""


def write(tmp_path: Path, main: str = MAIN, sites: str | None = None, **files: str) -> Path:
    if sites is None:
        sites = SITES.format(hash=hash_token(TOKEN))
    (tmp_path / "huishang.toml").write_text(main, encoding="utf-8")
    (tmp_path / "sites.toml").write_text(sites, encoding="utf-8")
    for name, text in files.items():
        (tmp_path / (name.replace("_", "-") + ".toml")).write_text(text, encoding="utf-8")
    return tmp_path / "huishang.toml"


def fails(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def test_small_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path))
    assert [s.id for s in config.sites] == ["hq", "hq.a", "hq.a.c1", "hq.b"]
    assert config.data_dir == tmp_path.resolve() / "state"
    assert config.demo_tokens == {}
    assert verify(TOKEN, config.token_hashes[SiteId("hq")])
    assert SiteId("hq.a") not in config.token_hashes
    assert config.site_names["hq.a.c1"] == "甲社区"


def test_optional_sections_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, main=""))
    assert config.web.port == 8080 and config.signalling.port == 8081
    assert config.tls.mode is TlsMode.OFF
    assert config.sites_path == tmp_path.resolve() / "sites.toml"


def test_ice_servers_and_public_url(tmp_path: Path) -> None:
    main = MAIN.replace(
        "[ice]\n",
        '[ice]\nservers = [{urls = "stun:127.0.0.1:3478"},'
        ' {urls = ["turn:127.0.0.1:3478"], username = "u", credential = "p"}]\n',
    ).replace("port = 8081\n", 'port = 8081\npublic_url = "wss://example.org/ws"\n')
    config = load_config(write(tmp_path, main))
    assert config.ice.welcome_servers() == [
        {"urls": ["stun:127.0.0.1:3478"]},
        {"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "p"},
    ]
    assert config.signalling.public_url == "wss://example.org/ws"


def test_tls_files(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    main = MAIN.replace('mode = "off"', 'mode = "files"\ncert = "c.pem"\nkey = "k.pem"')
    config = load_config(write(tmp_path, main))
    assert config.tls.mode is TlsMode.FILES
    assert config.tls.cert == tmp_path.resolve() / "c.pem"


def test_demo_tokens_file(tmp_path: Path) -> None:
    main = MAIN + '\n[demo]\ntokens_file = "demo-tokens.toml"\n'
    config = load_config(write(tmp_path, main, demo_tokens=f'"hq" = "{TOKEN}"\n'))
    assert config.demo_tokens == {"hq": TOKEN}


def test_cameras(tmp_path: Path) -> None:
    sites = SITES.format(hash=hash_token(TOKEN)) + (
        '\n[[sites]]\nid = "cam"\nname = "路口"\nrole = "observer"\nlevel = "camera"\n'
        'rtsp_url = "rtsp://127.0.0.1:8554/x"\nrtsp_transport = "udp"\n'
    )
    config = load_config(write(tmp_path, sites=sites))
    assert config.cameras[SiteId("cam")].rtsp_transport == "udp"
    assert SiteId("hq") not in config.cameras


# -- bad server configs -----------------------------------------------------------------------

BAD_MAIN = [
    ("port = 8080", "port = 70000", "huishang.toml: web.port", "out of range 0..65535"),
    ("port = 8080", "port = -1", "huishang.toml: web.port", "out of range"),
    ("port = 8080", 'port = "8080"', "huishang.toml: web.port", "expected an integer"),
    ("port = 8080", "port = true", "huishang.toml: web.port", "expected an integer"),
    ("port = 8080", "prot = 8080", "huishang.toml: web.prot", "unknown key; did you mean 'port'"),
    ("port = 8081", "port = 8080", "huishang.toml: signalling.port", "same port as web.port"),
    ('host = "127.0.0.1"\nport = 8080', 'host = ""\nport = 8080', "web.host", "must not be empty"),
    ('mode = "off"', 'mode = "on"', "huishang.toml: tls.mode", "unknown value 'on'"),
    ('mode = "off"', 'mode = "files"', "huishang.toml: tls.cert", 'mode "files" needs cert'),
    ('mode = "off"', 'mode = "files"\ncert = "no.pem"\nkey = "no.key"', "tls.cert", "not found"),
    ('mode = "off"', 'mode = "off"\ncert = "c.pem"', "huishang.toml: tls.key", "together"),
    ('["127.0.0.1"]', '["localhost"]', "ice.host_addresses[0]", "not an IP address"),
    ('["127.0.0.1"]', '"127.0.0.1"', "ice.host_addresses", "expected an array of strings"),
    (
        '["127.0.0.1"]',
        '["127.0.0.1"]\nservers = [{urls = "http://x"}]',
        "ice.servers[0].urls[0]",
        "stun:",
    ),
    (
        '["127.0.0.1"]',
        '["127.0.0.1"]\nservers = [{urls = []}]',
        "ice.servers[0].urls",
        "at least one",
    ),
    (
        '["127.0.0.1"]',
        '["127.0.0.1"]\nservers = [{url = "stun:x"}]',
        "ice.servers[0].urls",
        "missing",
    ),
    ("max_frame_bytes = 262144", "max_frame_bytes = 10", "limits.max_frame_bytes", "out of range"),
    ("rate_per_s = 20.0", "rate_per_s = 0", "huishang.toml: limits.rate_per_s", "greater than 0"),
    ("rejoin_grace_s = 15.0", "rejoin_grace_s = -1", "limits.rejoin_grace_s", "not be negative"),
    ("rejoin_grace_s = 15.0", "rejoin_grace_s = nan", "limits.rejoin_grace_s", "finite"),
    ('data_dir = "state"', "data_dir = 5", "huishang.toml: data_dir", "expected a string"),
    (
        'data_dir = "state"',
        'data_dri = "state"',
        "huishang.toml: data_dri",
        "did you mean 'data_dir'",
    ),
    ('sites = "sites.toml"', 'sites = "nowhere.toml"', "nowhere.toml", "cannot read file"),
    ("[web]", "[web\n", "huishang.toml", "TOML syntax error"),
]


@pytest.mark.parametrize(("old", "new", "where", "what"), BAD_MAIN)
def test_bad_server_config(tmp_path: Path, old: str, new: str, where: str, what: str) -> None:
    assert old in MAIN
    error = fails(write(tmp_path, MAIN.replace(old, new, 1)))
    assert where in str(error)
    assert what in str(error)


def test_public_url_scheme(tmp_path: Path) -> None:
    main = MAIN.replace("port = 8081\n", 'port = 8081\npublic_url = "http://x/"\n')
    error = fails(write(tmp_path, main))
    assert error.key == "signalling.public_url"
    assert "ws://" in error.problem


def test_syntax_error_names_line(tmp_path: Path) -> None:
    error = fails(write(tmp_path, MAIN.replace("[tls]", "[tls]\nmode == 1")))
    assert error.key is None
    assert error.file == tmp_path.resolve() / "huishang.toml"
    assert "line 13" in error.problem


def test_section_must_be_a_table(tmp_path: Path) -> None:
    error = fails(write(tmp_path, "web = 3\n"))
    assert (error.key, error.problem) == ("web", "expected a table, got an integer (3)")


def test_missing_config_file(tmp_path: Path) -> None:
    error = fails(tmp_path / "absent.toml")
    assert "absent.toml: cannot read file" in str(error)


def test_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path)
    (tmp_path / "sites.toml").write_bytes("name = '街'".encode("gbk"))
    assert "not UTF-8" in str(fails(path))


# -- bad site directories -----------------------------------------------------------------------

BAD_SITES = [
    (
        'role = "terminal"\nlevel = "street"',
        'role = "chairman"\nlevel = "street"',
        "sites.toml: sites[1].role",
        "unknown role 'chairman'",
    ),
    ('level = "community"', 'level = "village"', "sites.toml: sites[2].level", "unknown level"),
    (
        'id = "hq.b"',
        'id = "hq.a"',
        "sites.toml: sites[3].id",
        "duplicate id 'hq.a' (also at sites[1])",
    ),
    (
        'parent = "hq.a"',
        'parent = "hq.x"',
        "sites.toml: sites[2].parent",
        "no site with id 'hq.x'; did you mean",
    ),
    ('name = "乙街"\n', "", "sites.toml: sites[3].name", "missing (required)"),
    ('name = "乙街"', 'name = "  "', "sites.toml: sites[3].name", "must not be empty"),
    ('name = "乙街"', "name = 3", "sites.toml: sites[3].name", "expected a string, got an integer"),
    ('name = "乙街"', 'name = "乙街"\nnmae = "x"', "sites.toml: sites[3].nmae", "unknown key"),
    ('id = "hq.b"', 'id = "hq b"', "sites.toml: sites[3].id", "spaces"),
    (
        'parent = "hq"\n\n[[sites]]\nid = "hq.a.c1"',
        'parent = "hq.a"\n\n[[sites]]\nid = "hq.a.c1"',
        "sites.toml: sites[1].parent",
        "a site cannot be its own parent",
    ),
    (
        'token_hash = "sha256$',
        'token_hash = "md5$',
        "sites.toml: sites[0].token_hash",
        "unknown hash scheme",
    ),
    (
        'level = "community"',
        'level = "community"\nrtsp_transport = "tcp"',
        "sites[2].rtsp_transport",
        "without rtsp_url",
    ),
    (
        'level = "community"',
        'level = "community"\nrtsp_url = "http://x"',
        "sites[2].rtsp_url",
        "rtsp://",
    ),
    (
        'level = "community"',
        'level = "community"\nrtsp_url = "rtsp://x"\nrtsp_transport = "sctp"',
        "sites[2].rtsp_transport",
        "unknown value 'sctp'",
    ),
    ("[[sites]]", "[[site]]", "sites.toml: site", "unknown key"),
]


@pytest.mark.parametrize(("old", "new", "where", "what"), BAD_SITES)
def test_bad_sites(tmp_path: Path, old: str, new: str, where: str, what: str) -> None:
    text = SITES.format(hash=hash_token(TOKEN))
    assert old in text
    error = fails(write(tmp_path, sites=text.replace(old, new, 1)))
    assert where in str(error)
    assert what in str(error)


def test_parent_cycle(tmp_path: Path) -> None:
    text = SITES.format(hash=hash_token(TOKEN)).replace(
        'level = "district"', 'level = "district"\nparent = "hq.a.c1"'
    )
    error = fails(write(tmp_path, sites=text))
    assert error.key == "sites[0].parent"
    assert "loops back" in error.problem


def test_no_sites(tmp_path: Path) -> None:
    error = fails(write(tmp_path, sites="sites = []\n"))
    assert (error.key, error.problem) == ("sites", "needs at least one entry")
    error = fails(write(tmp_path, sites="# nothing\n"))
    assert (error.key, error.problem) == ("sites", "missing (required)")


def test_demo_token_errors(tmp_path: Path) -> None:
    main = MAIN + '\n[demo]\ntokens_file = "demo-tokens.toml"\n'
    error = fails(write(tmp_path, main, demo_tokens='"hq" = "wrong"\n'))
    assert "demo-tokens.toml: hq: token does not match" in str(error)
    error = fails(write(tmp_path, main, demo_tokens=f'"hq.q" = "{TOKEN}"\n'))
    assert "demo-tokens.toml: hq.q: no site" in str(error)
    error = fails(write(tmp_path, main, demo_tokens=f'hq = ["{TOKEN}"]\n'))
    assert "demo-tokens.toml: hq: expected a string" in str(error)
    (tmp_path / "demo-tokens.toml").unlink()
    error = fails(write(tmp_path, main))
    assert "demo-tokens.toml: cannot read file" in str(error)
    error = fails(write(tmp_path, MAIN + '\n[demo]\ntoken_file = "x"\n'))
    assert "huishang.toml: demo.token_file: unknown key" in str(error)


# -- the cascade uplink ([uplink]) -----------------------------------------------------------

UPLINK_SITE = (
    '\n[[sites]]\nid = "hq.up"\nname = "市应急指挥中心"\nrole = "uplink"\nlevel = "uplink"\n'
)
UPLINK = """
[uplink]
url = "ws://127.0.0.1:9081/"
token = "district-token-at-the-city"
site = "hq.up"
"""


def write_uplink(tmp_path: Path, uplink: str = UPLINK, **files: str) -> Path:
    sites = SITES.format(hash=hash_token(TOKEN)) + UPLINK_SITE
    return write(tmp_path, MAIN + uplink, sites=sites, **files)


def test_no_uplink_by_default(tmp_path: Path, demo: HuishangConfig) -> None:
    assert load_config(write(tmp_path)).uplink is None
    assert demo.uplink is None


def test_uplink_defaults(tmp_path: Path) -> None:
    uplink = load_config(write_uplink(tmp_path)).uplink
    assert uplink is not None
    assert uplink.url == "ws://127.0.0.1:9081/"
    assert uplink.token == "district-token-at-the-city"
    assert uplink.site == "hq.up"
    assert uplink.publish is UplinkPublish.PROGRAMME
    assert uplink.verify and uplink.ca_file is None
    assert 0 < uplink.retry_min_s <= uplink.retry_max_s
    assert "district-token" not in repr(uplink)  # the secret stays out of logs


def test_uplink_token_file_wall_and_tls(tmp_path: Path) -> None:
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "token.txt").write_text("  from-a-file\n", encoding="utf-8")
    (tmp_path / "ca.pem").write_text("x")
    text = (
        '\n[uplink]\nurl = "wss://city.example.gov.cn:8081/"\ntoken_file = "secret/token.txt"\n'
        'site = "hq.up"\npublish = "wall"\noutput = "wall"\nca_file = "ca.pem"\n'
        "retry_min_s = 0.5\nretry_max_s = 5\n"
    )
    uplink = load_config(write_uplink(tmp_path, text)).uplink
    assert uplink is not None
    assert uplink.token == "from-a-file"
    assert (uplink.publish, uplink.output) == (UplinkPublish.WALL, "wall")
    assert uplink.ca_file == tmp_path.resolve() / "ca.pem"
    assert (uplink.retry_min_s, uplink.retry_max_s) == (0.5, 5.0)
    insecure = UPLINK.replace("ws://", "wss://") + "verify = false\n"
    uplink = load_config(write_uplink(tmp_path, insecure)).uplink
    assert uplink is not None and not uplink.verify


def test_uplink_settings_become_the_signalling_config(tmp_path: Path) -> None:
    insecure = UPLINK.replace("ws://", "wss://") + "verify = false\n"
    config = load_config(write_uplink(tmp_path, insecure))
    assert config.uplink is not None
    made = uplink_config(config.uplink, ["wall"], str(config.path))
    assert made.ssl is not None and made.ssl.verify_mode is ssl.CERT_NONE
    assert made.publish_output is None and made.site == "hq.up"
    wall = UPLINK + 'publish = "wall"\noutput = "side"\n'
    config = load_config(write_uplink(tmp_path, wall))
    assert config.uplink is not None
    assert uplink_config(config.uplink, ["wall", "side"], "x").publish_output == "side"
    with pytest.raises(ConfigError) as info:
        uplink_config(config.uplink, ["wall"], str(config.path))
    assert info.value.key == "uplink.output" and "'side'" in info.value.problem


BAD_UPLINK = [
    ('url = "ws://', 'url = "http://', "uplink.url", "must start with ws:// or wss://"),
    ('url = "ws://127.0.0.1:9081/"\n', "", "uplink.url", "missing"),
    ("token = ", "tokn = ", "uplink.token", "missing (required; or give token_file)"),
    ("token = ", 'token_file = "t.txt"\ntoken = ', "uplink.token_file", "not both"),
    ('token = "district-token-at-the-city"', 'token_file = "no.txt"', "token_file", "cannot read"),
    ('token = "district-token-at-the-city"', 'token_file = "empty.txt"', "token_file", "empty"),
    ('site = "hq.up"', 'site = "hq.upp"', "uplink.site", "no site 'hq.upp'"),
    ('site = "hq.up"', 'site = "hq.upp"', "uplink.site", "did you mean 'hq.up'"),
    ('site = "hq.up"', 'site = "hq.a"', "uplink.site", "level 'street'; it must be 'uplink'"),
    ('site = "hq.up"', "site = 3", "uplink.site", "expected a string"),
    ('site = "hq.up"\n', 'site = "hq.up"\npublish = "composite"\n', "uplink.publish", "unknown"),
    ('site = "hq.up"\n', 'site = "hq.up"\noutput = "wall"\n', "uplink.output", 'publish = "wall"'),
    ('site = "hq.up"\n', 'site = "hq.up"\nca_file = "ca.pem"\n', "uplink.ca_file", "wss://"),
    ('site = "hq.up"\n', 'site = "hq.up"\nverify = false\n', "uplink.verify", "wss://"),
    ('site = "hq.up"\n', 'site = "hq.up"\nverify = "no"\n', "uplink.verify", "expected a boolean"),
    ("ws://", "wss://", None, None),  # (wss alone is fine: see the next ones)
    (
        'url = "ws://',
        'ca_file = "nowhere.pem"\nurl = "wss://',
        "uplink.ca_file",
        "file not found",
    ),
    (
        'url = "ws://',
        'ca_file = "ca.pem"\nverify = false\nurl = "wss://',
        "uplink.ca_file",
        "verify = false",
    ),
    ('site = "hq.up"\n', 'site = "hq.up"\nretry_min_s = 0\n', "retry_min_s", "greater than 0"),
    (
        'site = "hq.up"\n',
        'site = "hq.up"\nretry_min_s = 5\nretry_max_s = 1\n',
        "uplink.retry_max_s",
        "must not be less than retry_min_s",
    ),
    ('site = "hq.up"\n', 'site = "hq.up"\nprogramme = "wall"\n', "uplink.programme", "unknown"),
]


@pytest.mark.parametrize(("old", "new", "where", "what"), BAD_UPLINK)
def test_bad_uplink(
    tmp_path: Path, old: str, new: str, where: str | None, what: str | None
) -> None:
    assert old in UPLINK
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "ca.pem").write_text("x")
    path = write_uplink(tmp_path, UPLINK.replace(old, new, 1))
    if where is None:
        assert load_config(path).uplink is not None
        return
    error = fails(path)
    assert where in str(error) and "huishang.toml" in str(error)
    assert what is not None and what in str(error)


def test_uplink_must_be_a_table(tmp_path: Path) -> None:
    sites = SITES.format(hash=hash_token(TOKEN)) + UPLINK_SITE
    error = fails(write(tmp_path, "uplink = 5\n" + MAIN, sites=sites))
    assert (error.key, error.problem) == ("uplink", "expected a table, got an integer (5)")
    error = fails(write(tmp_path, MAIN + "\n[uplnk]\n", sites=sites))
    assert error.key == "uplnk" and "did you mean 'uplink'" in error.problem


def test_recording_source(tmp_path: Path, demo: HuishangConfig) -> None:
    assert demo.recording_source == "wall"
    assert load_config(write(tmp_path)).recording_source is None
    path = write(tmp_path, MAIN + '\n[recording]\nsource = "programme"\n')
    assert load_config(path).recording_source == "programme"
    with pytest.raises(ConfigError, match=r"recording\.source: must not be empty"):
        load_config(write(tmp_path, MAIN + '\n[recording]\nsource = " "\n'))
    with pytest.raises(ConfigError, match=r"recording\.sauce"):
        load_config(write(tmp_path, MAIN + '\n[recording]\nsauce = "wall"\n'))


async def test_an_unknown_recording_source_stops_the_start(demo: HuishangConfig) -> None:
    import dataclasses

    from web.app import Huishang

    config = dataclasses.replace(
        demo,
        recording_source="studio",
        web=dataclasses.replace(demo.web, port=0),
        signalling=dataclasses.replace(demo.signalling, port=0),
    )
    with pytest.raises(ConfigError, match=r"recording\.source: 'studio' is not one of"):
        await Huishang.open(config=config)
