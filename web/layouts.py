"""Loading the wall layout presets shipped with the configuration (``config/layouts.toml``).

The file sits next to ``huishang.toml`` and lists named presets of the ``wall`` output, in the
shape of PROTOCOL.md ``<layout>``::

    [[presets]]
    name = "四分屏"
    kind = "4"
    tiles = [{ source = "tianhe" }, { source = "tianhe.zhuji" }, {}, { source = "tianhe.liede" }]

A tile is a table with an optional ``source`` (a site id; absent: an empty tile) and, for
``kind = "custom"`` only, ``rect = [x, y, w, h]`` as fractions of the canvas. Fewer tiles than
the kind has are padded with empty tiles (PROTOCOL.md additions, "Layouts").

The shape is checked by :func:`signalling.messages.layout_from_wire` (the same check a
``layout`` request gets), custom rects by :func:`bridge.layout.validate_custom` (inside the
canvas, no overlap), and every source must be a site of the directory. Any problem is a
:class:`~web.config_reader.ConfigError` naming the file, the key as a dotted path
(``layouts.toml: presets[1].tiles[3].source``, indexes from 0) and what is wrong, so a bad
preset stops the start instead of failing when the operator loads it.

The composition root loads these first; presets saved in the store override them by name.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from bridge.layout import LayoutError, validate_custom
from signalling.errors import BadRequest
from signalling.messages import MAX_NAME, layout_from_wire
from signalling.model import LAYOUT_KINDS, Layout
from web.config import near_matches
from web.config_reader import TableReader

__all__ = ["LAYOUTS_FILE", "load_layout_presets"]

#: The presets file's name, next to the main configuration file.
LAYOUTS_FILE = "layouts.toml"

#: ``layout_from_wire`` names the offending field in its message: "layout: field 'X' what".
_FIELD = re.compile(r"^layout: field '(?P<field>[^']+)' (?P<what>.*)$", re.DOTALL)


def load_layout_presets(path: Path, site_ids: Collection[str]) -> dict[str, Layout]:
    """Read the presets in *path*, in file order; an absent file means no shipped presets.

    *site_ids* are the directory's sites; a tile naming any other site is an error.
    Raises :class:`ConfigError` for unreadable files, TOML syntax errors, unknown keys,
    duplicate or over-long names, malformed layouts, overlapping custom rects and unknown sites.
    """
    if not path.exists():
        return {}
    top = TableReader.load(path)
    known = set(site_ids)
    presets: dict[str, Layout] = {}
    for preset in top.array_of_tables("presets"):
        name = preset.string("name", nonempty=True)
        if name != name.strip():
            raise preset.error("name", f"{name!r} has leading or trailing spaces")
        if len(name) > MAX_NAME:
            raise preset.error("name", f"is longer than {MAX_NAME} characters")
        if name in presets:
            raise preset.error("name", f"duplicate preset name {name!r}")
        presets[name] = _read_preset(preset, known)
    top.finish()
    return presets


def _read_preset(preset: TableReader, known: set[str]) -> Layout:
    kind = preset.choice("kind", list(LAYOUT_KINDS), what="layout kind")
    wire_tiles: list[dict[str, Any]] = []
    for tile in preset.array_of_tables("tiles"):
        wire: dict[str, Any] = {"source": tile.optional_string("source")}
        if tile.has("rect"):
            wire["rect"] = tile.raw("rect")  # checked by layout_from_wire below
        for key in tile.key_names():
            if key not in ("source", "rect"):
                raise tile.error(key, "unknown key (known keys: rect, source)")
        wire_tiles.append(wire)
    preset.finish()
    try:
        layout = layout_from_wire({"output": "wall", "kind": kind, "tiles": wire_tiles})
    except BadRequest as exc:
        match = _FIELD.match(exc.message)
        if match is None:
            raise preset.error(None, exc.message) from None
        raise preset.error(match["field"], match["what"]) from None
    for index, tile_layout in enumerate(layout.tiles):
        source = tile_layout.source
        if source is not None and source not in known:
            near = near_matches(source, sorted(known), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise preset.error(f"tiles[{index}].source", f"unknown site {source!r}{hint}")
    if kind == "custom":
        try:
            validate_custom([t.rect for t in layout.tiles if t.rect is not None])
        except LayoutError as exc:
            where = f"tiles[{exc.index}].rect" if exc.index is not None else "tiles"
            raise preset.error(where, str(exc)) from None
    return layout
