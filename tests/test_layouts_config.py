"""The shipped wall layout presets (config/layouts.toml) and the checks of web/layouts.py.

A bad presets file must stop the start with the file, the key as a dotted path and the
problem (ARCHITECTURE.md, config/), never fail later when the operator loads the preset.
Also the geometry endpoint the operator page draws its wall schematic from.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.layout import tile_rects
from signalling.client import Client
from signalling.model import SiteId
from web.app import Huishang
from web.config import HuishangConfig, default_config_path, load_config
from web.config_reader import ConfigError
from web.layouts import load_layout_presets

SHIPPED = default_config_path().parent / "layouts.toml"
SITES = ["tianhe", "tianhe.zhuji", "tianhe.xiancun", "tianhe.liede", "tianhe.wall"]


@pytest.fixture(scope="module")
def demo_sites() -> dict[str, str]:
    config = load_config(default_config_path())
    return {str(s.id): s.level.value for s in config.sites}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "layouts.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path, sites: list[str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_layout_presets(path, SITES if sites is None else sites)
    return info.value


# -- the shipped file -----------------------------------------------------------------------


def test_the_shipped_presets_load(demo_sites: dict[str, str]) -> None:
    presets = load_layout_presets(SHIPPED, demo_sites)
    assert list(presets) == ["全部街道", "指挥中心大屏 1+7", "四分屏"]

    everything = presets["全部街道"]
    sources = [t.source for t in everything.tiles]
    streets = [sid for sid, level in demo_sites.items() if level == "street"]
    assert len(streets) == 19
    assert sources == ["tianhe", *streets]  # the centre, then every street in directory order
    rects = tile_rects("custom", 1920, 1080, [t.rect for t in everything.tiles if t.rect])
    assert rects[0] == (0, 0, 768, 432)  # the district centre large, 16:9
    assert {(r.w, r.h) for r in rects[1:]} == {(384, 216)}  # the streets, 16:9 each

    big = presets["指挥中心大屏 1+7"]
    assert big.kind == "1+7" and big.output == "wall"
    assert big.tiles[0].source == "tianhe"
    assert len(big.tiles) == 8 and all(t.source in streets for t in big.tiles[1:])

    four = presets["四分屏"]
    assert four.kind == "4" and four.tiles[0].source == "tianhe"
    assert all(t.source in streets for t in four.tiles[1:])


def test_a_missing_file_means_no_shipped_presets(tmp_path: Path) -> None:
    assert load_layout_presets(tmp_path / "layouts.toml", SITES) == {}


def test_fewer_tiles_are_padded_and_empty_tiles_allowed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [[presets]]
        name = "两格"
        kind = "4"
        tiles = [{ source = "tianhe" }, {}]
        """,
    )
    layout = load_layout_presets(path, SITES)["两格"]
    assert [t.source for t in layout.tiles] == ["tianhe", None, None, None]


async def test_the_server_offers_shipped_presets_and_stored_ones_override(
    demo_config: HuishangConfig,
) -> None:
    app = await Huishang.open(config=demo_config)
    try:
        token = app.config.demo_tokens[SiteId("tianhe.operator")]
        operator = await Client.connect(app.signalling_url, token)
        assert {"全部街道", "指挥中心大屏 1+7", "四分屏"} <= set(
            operator.welcome["conference"]["presets"]
        )
        await operator.request({"type": "preset_load", "name": "四分屏"})
        event = await operator.next_event("layout", timeout=10)
        assert event["layout"]["kind"] == "4"
        # Save a different layout under a shipped name: after a restart the store's wins.
        single = {"kind": "1", "tiles": [{"source": "tianhe.liede"}]}
        await operator.request({"type": "layout", "layout": single})
        await operator.request({"type": "preset_save", "name": "四分屏"})
        await operator.close()
    finally:
        await app.close()
    app = await Huishang.open(config=demo_config)
    try:
        token = app.config.demo_tokens[SiteId("tianhe.operator")]
        operator = await Client.connect(app.signalling_url, token)
        await operator.request({"type": "preset_load", "name": "四分屏"})
        event = await operator.next_event("layout", timeout=10)
        assert event["layout"]["kind"] == "1"
        assert event["layout"]["tiles"] == [{"source": "tianhe.liede"}]
        await operator.close()
    finally:
        await app.close()


async def test_a_deleted_shipped_preset_stays_deleted_until_saved_again(
    demo_config: HuishangConfig,
) -> None:
    async def operator_of(app: Huishang) -> Client:
        token = app.config.demo_tokens[SiteId("tianhe.operator")]
        return await Client.connect(app.signalling_url, token)

    app = await Huishang.open(config=demo_config)
    try:
        operator = await operator_of(app)
        await operator.request({"type": "preset_delete", "name": "四分屏"})
        await operator.close()
    finally:
        await app.close()
    app = await Huishang.open(config=demo_config)  # the shipped file still has it
    try:
        operator = await operator_of(app)
        presets = operator.welcome["conference"]["presets"]
        assert "四分屏" not in presets and "全部街道" in presets
        single = {"kind": "1", "tiles": [{"source": "tianhe.liede"}]}
        await operator.request({"type": "layout", "layout": single})
        await operator.request({"type": "preset_save", "name": "四分屏"})  # back, as saved
        await operator.close()
    finally:
        await app.close()
    app = await Huishang.open(config=demo_config)
    try:
        operator = await operator_of(app)
        assert "四分屏" in operator.welcome["conference"]["presets"]
        await operator.request({"type": "preset_load", "name": "四分屏"})
        event = await operator.next_event("layout", timeout=10)
        assert event["layout"]["tiles"] == [{"source": "tianhe.liede"}]
        await operator.close()
    finally:
        await app.close()


async def test_a_bad_presets_file_stops_the_start(
    demo_config: HuishangConfig, tmp_path: Path
) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    for name in ("huishang.toml", "sites.toml", "demo-tokens.toml"):
        (folder / name).write_bytes((default_config_path().parent / name).read_bytes())
    (folder / "layouts.toml").write_text(
        '[[presets]]\nname = "坏"\nkind = "4"\ntiles = [{ source = "tianhe.nowhere" }]\n',
        encoding="utf-8",
    )
    config = dataclasses.replace(demo_config, path=folder / "huishang.toml")
    with pytest.raises(ConfigError) as info:
        await Huishang.open(config=config)
    assert info.value.key == "presets[0].tiles[0].source"
    assert str(info.value).startswith(str(folder / "layouts.toml"))


# -- bad files: the key and the problem -----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        (  # an unknown site, with a hint
            """
            [[presets]]
            name = "a"
            kind = "4"
            [[presets]]
            name = "b"
            kind = "4"
            tiles = [{ source = "tianhe" }, {}, {}, { source = "tianhe.zuji" }]
            """,
            "presets[1].tiles[3].source",
            "unknown site 'tianhe.zuji'; did you mean 'tianhe.zhuji'?",
        ),
        (  # an unknown kind
            """
            [[presets]]
            name = "a"
            kind = "3x3"
            """,
            "presets[0].kind",
            "unknown layout kind '3x3'",
        ),
        (  # more tiles than the kind has
            """
            [[presets]]
            name = "a"
            kind = "2"
            tiles = [{}, {}, {}]
            """,
            "presets[0].tiles",
            "has 3 tiles; kind '2' has 2 at most",
        ),
        (  # overlapping custom rects
            """
            [[presets]]
            name = "a"
            kind = "custom"
            tiles = [
              { source = "tianhe", rect = [0.0, 0.0, 0.6, 0.6] },
              { source = "tianhe.zhuji", rect = [0.5, 0.5, 0.5, 0.5] },
            ]
            """,
            "presets[0].tiles[1].rect",
            "overlaps rect 0",
        ),
        (  # a rect off the canvas
            """
            [[presets]]
            name = "a"
            kind = "custom"
            tiles = [{ rect = [0.5, 0.0, 0.6, 1.0] }]
            """,
            "presets[0].tiles[0].rect",
            "reaches past the canvas edge",
        ),
        (  # a custom tile without a rect
            """
            [[presets]]
            name = "a"
            kind = "custom"
            tiles = [{ source = "tianhe" }]
            """,
            "presets[0].tiles[0].rect",
            "must be [x, y, w, h]",
        ),
        (  # a rect on a fixed kind
            """
            [[presets]]
            name = "a"
            kind = "4"
            tiles = [{ rect = [0.0, 0.0, 0.5, 0.5] }]
            """,
            "presets[0].tiles[0].rect",
            "is only for custom layouts",
        ),
        (  # a custom layout with no tiles
            """
            [[presets]]
            name = "a"
            kind = "custom"
            """,
            "presets[0].tiles",
            "needs at least one tile",
        ),
        (  # a typo in a tile
            """
            [[presets]]
            name = "a"
            kind = "4"
            tiles = [{ sorce = "tianhe" }]
            """,
            "presets[0].tiles[0].sorce",
            "unknown key",
        ),
        (  # a typo in a preset
            """
            [[presets]]
            name = "a"
            kind = "4"
            tile = []
            """,
            "presets[0].tile",
            "did you mean 'tiles'?",
        ),
        (  # the same name twice
            """
            [[presets]]
            name = "a"
            kind = "4"
            [[presets]]
            name = "a"
            kind = "9"
            """,
            "presets[1].name",
            "duplicate preset name 'a'",
        ),
        (  # a name the wire would refuse
            f"""
            [[presets]]
            name = "{"长" * 65}"
            kind = "4"
            """,
            "presets[0].name",
            "longer than 64 characters",
        ),
        (  # no name
            """
            [[presets]]
            kind = "4"
            """,
            "presets[0].name",
            "missing (required)",
        ),
        (  # a source that is not a string
            """
            [[presets]]
            name = "a"
            kind = "4"
            tiles = [{ source = 7 }]
            """,
            "presets[0].tiles[0].source",
            "expected a string",
        ),
        (  # a tile that is not a table
            """
            [[presets]]
            name = "a"
            kind = "4"
            tiles = ["tianhe"]
            """,
            "presets[0].tiles[0]",
            "expected a table",
        ),
        (  # a key outside [[presets]]
            """
            preset = 1
            """,
            "preset",
            "unknown key",
        ),
    ],
)
def test_bad_files_name_the_key_and_the_problem(
    tmp_path: Path, body: str, key: str, problem: str
) -> None:
    path = write(tmp_path, body)
    error = error_of(path)
    assert error.file == path
    assert error.key == key
    assert problem in error.problem
    assert str(error).startswith(f"{path}: {key}: ")


def test_toml_syntax_errors_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[[presets]]\nname = "a\n')
    error = error_of(path)
    assert error.file == path and error.key is None
    assert "TOML syntax error" in error.problem


# -- GET /api/layout-geometry ---------------------------------------------------------------


@pytest.fixture
async def web_url(demo_config: HuishangConfig) -> AsyncIterator[str]:
    app = await Huishang.open(config=demo_config)
    try:
        yield app.web_url
    finally:
        await app.close()


async def geometry(url: str, **query: str) -> tuple[int, dict[str, object] | str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/layout-geometry", params=query) as response,
    ):
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def test_geometry_matches_the_compositor(web_url: str) -> None:
    for kind in ("1", "2", "4", "1+5", "1+7", "9", "16", "25", "36"):
        status, body = await geometry(web_url, kind=kind, w="1920", h="1080")
        assert status == 200
        expected = [list(r) for r in tile_rects(kind, 1920, 1080)]
        assert body == {"kind": kind, "w": 1920, "h": 1080, "rects": expected}
    status, body = await geometry(web_url, kind="1+5", w="1280", h="720")
    assert status == 200 and isinstance(body, dict)
    assert body["rects"] == [list(r) for r in tile_rects("1+5", 1280, 720)]
    rects = [[0, 0, 0.5, 1], [0.5, 0, 0.5, 0.5]]
    status, body = await geometry(web_url, kind="custom", rects=json.dumps(rects))
    assert status == 200 and isinstance(body, dict)
    assert body["rects"] == [[0, 0, 960, 1080], [960, 0, 960, 540]]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"kind": "3"}, "unknown_kind"),
        ({"kind": "custom"}, "missing_rects"),
        ({"kind": "4", "rects": "[[0, 0, 1, 1]]"}, "unexpected_rects"),
        ({"kind": "custom", "rects": "[[0, 0, 0.6, 1], [0.5, 0, 0.5, 1]]"}, "overlap"),
        ({"kind": "custom", "rects": "[[0, 0, 2, 1]]"}, "out_of_range"),
        ({"kind": "custom", "rects": '[["a", 0, 1, 1]]'}, "malformed_rect"),
    ],
)
async def test_geometry_refuses_what_the_compositor_refuses(
    web_url: str, query: dict[str, str], reason: str
) -> None:
    status, body = await geometry(web_url, **query)
    assert status == 400
    assert isinstance(body, dict) and body["error"] == reason and body["message"]


@pytest.mark.parametrize(
    "query",
    [
        {"kind": "4", "w": "wide"},
        {"kind": "4", "w": "1", "h": "1080"},
        {"kind": "4", "w": "100000"},
        {"kind": "custom", "rects": "not json"},
        {"kind": "custom", "rects": '{"x": 1}'},
        {"kind": "custom", "rects": "[[1" + "0" * 400 + ", 0, 1, 1]]"},
    ],
)
async def test_geometry_refuses_bad_queries(web_url: str, query: dict[str, str]) -> None:
    status, body = await geometry(web_url, **query)
    assert status == 400 and body
